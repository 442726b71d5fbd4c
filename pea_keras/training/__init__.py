"""End-to-end PEA training used by `train.py`.

Modules:
  archs      compact networks (keras.applications where one exists) for either Keras flavour
  data       the offline digits split, TFDS and image folders, and the tf.data pipelines
  tasks      what is trained and measured: classification (segmentation lives in segmentation/)
  run        the chain: build -> wrap -> train -> strip -> int8 TFLite -> metrics
  reporting  metrics.json, alpha trace, history plots and the summary table

Nothing here is imported by `pea_keras` itself, so importing the core stays light.
"""
