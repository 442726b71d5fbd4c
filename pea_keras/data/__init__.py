"""Every data source of pea_keras, named by one SOURCE syntax (see `sources`).

    sources         SOURCE strings: digits, digit_scenes, folder:, tfds:, npy:, npz:
    images          image files: extensions, class folders, a decode check, typical size
    augmentation    which random changes training images get (--augment), chosen for the data
    digits          scikit-learn's digits, the offline default
    arrays          model inputs as checked numpy arrays (calibration, QAT, evaluation)
    classification  tf.data pipelines of labelled images for training
    scenes          digit scenes, the offline segmentation data
    segmentation    tf.data pipelines of (image, mask) pairs for training
    batches         the tf.data steps both pipelines share (in-memory batching, back to arrays)

Training pipelines need TensorFlow; `sources`, `images` and `arrays` import it only on demand.
"""

from pea_keras.data.arrays import calibration_samples, check_inputs, class_names, load_arrays
from pea_keras.data.sources import Source, parse
from pea_keras.errors import DataError

__all__ = ["DataError", "Source", "calibration_samples", "check_inputs", "class_names", "load_arrays", "parse"]
