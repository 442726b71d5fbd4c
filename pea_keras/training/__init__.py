"""End-to-end PEA training used by `train.py`.

Modules:
  tasks      what is trained and measured, one folder per task (classification, segmentation)
             with its networks; the registry
  modes      the training modes (pea, relu, surrogate, novel, relufy): the registry
  run        the chain: build -> wrap -> train -> strip -> int8 TFLite -> metrics
  reporting  metrics.json, alpha trace, history plots and the summary table

Nothing here is imported by `pea_keras` itself, so importing the core stays light.
"""
