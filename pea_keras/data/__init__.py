"""Every data source of pea_keras, named by one SOURCE syntax (see `sources`).

    sources         SOURCE strings: digits, digit_scenes, folder:, tfds:, npy:, npz:
    images          image files: extensions, class folders, a decode check, typical size
    augmentation    which random changes training images get (setting `augment`), chosen for the data
    digits          scikit-learn's handwritten digits, the offline default
    arrays          model inputs as checked numpy arrays (calibration, QAT, evaluation)
    batches         the tf.data steps every task's pipeline shares (in-memory batching, back to arrays)

Each training task loads its own data and builds its pipelines in its own folder (the `data`
module of each task under `training/tasks/`), on top of these.
A setting that cannot work raises `SettingError` naming it (`augment`); train.py says it as its flag.
`batches` needs TensorFlow; the others import it only on demand.
"""

from pea_keras.data.arrays import calibration_samples, check_inputs, class_names, load_arrays
from pea_keras.data.sources import Source, parse
from pea_keras.errors import DataError

__all__ = ["DataError", "Source", "calibration_samples", "check_inputs", "class_names", "load_arrays", "parse"]
