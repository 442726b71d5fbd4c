"""`pea-train` and `train.py`: flags -> the training chain (`pea_keras.training.run`).

    pea-train --arch mobilenet_v2                  # offline default: digits, width 0.35 (MCU-sized)
    pea-train --arch mobilenet_v2 --compare        # ReLU baseline vs PEA, same seed and data
    pea-train --task segmentation --compare        # Lite R-ASPP on digit scenes, mIoU
    pea-train --arch tiny --backend jax            # Keras 3 on JAX (or torch); int8 export as ever
    pea-train --arch mobilenet_v2 --dataset imagenet2012 --data_dir ~/tensorflow_datasets \\
        --image_size 224 --epochs 150 --batch_size 1024 --optimizer sgd --lr 0.4 \\
        --warmup_epochs 5 --weight_decay 4e-5 --label_smoothing 0.1 --bn_momentum 0.99 \\
        --strategy mirrored                        # ImageNet on every local GPU

One run writes a run directory (models, metrics.json, history.csv, TensorBoard logs, plots) and
the int8 TFLite file into --tflite_dir. Mistakes in flags or data print one line and exit 2.
`train.py` in a checkout is the same program (its int8 files go to the checkout's tflite/).
"""

import os
import sys
import warnings

from absl import app, flags

from pea_keras import console
from pea_keras.errors import SettingError, UsageError

with warnings.catch_warnings(record=True) as _LOADING:  # Said once the tool's warning format is set.
    warnings.simplefilter("always")
    from pea_keras.training import config as config_lib  # Settings only: TensorFlow loads later.

FLAGS = flags.FLAGS
config_lib.define_flags(flags)
flags.DEFINE_bool("compare", False, "Train the ReLU baseline and PEA with the same seed and data order and "
                  "report PEA minus ReLU (writes <output_dir>/{relu,pea}/ and compare.json).")


def _prog():
    return console.prog("pea-train")


def main(argv):
    del argv  # parse_flags rejected positional arguments.
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # TensorFlow's Python INFO lines are noise here.
    from pea_keras.files import StorageError
    from pea_keras.tflite import TFLiteError
    from pea_keras.training import comparison, run, rundir

    config = config_lib.from_flags(FLAGS)
    try:
        if FLAGS.compare:
            comparison.compare(config)
        else:
            run.run(config)
    except TFLiteError as e:
        print(f"{_prog()}: error: int8 export failed: {e}", file=sys.stderr)
        return 1
    except SettingError as e:  # The library names the setting; train.py's flag of the same name says it.
        print(f"{_prog()}: error: --{e.setting} {e.problem}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"{_prog()}: error: {e}", file=sys.stderr)
        return 2
    except StorageError as e:  # A full, read-only or forbidden disk; the message says what is intact.
        print(f"{_prog()}: error: {e}", file=sys.stderr)
        return 1
    except rundir.RunFinished as e:
        print(f"{_prog()}: {e}")
        return 0
    return 0


def _stopped(e):
    """Ctrl-C or SIGTERM (a scheduler, a preempted machine) at any moment: one line saying what to
    run next (`rundir.next_step`, once the run had written), and 130 or 143."""
    word, code = console.stopped(e)
    then = getattr(e, "next_step", None) or "nothing was written yet: run the same command again"
    print(f"{_prog()}: {word}; {then}", file=sys.stderr, flush=True)
    return code


_HELP = {"-h", "--help", "-?", "--helpshort", "--helpfull"}


def parse_flags(argv):
    """absl's parsing, but --help exits 0 and a bad flag is one line on stderr and exit status 2."""
    console.set_prog(os.path.basename(argv[0]))
    if _HELP & set(argv[1:]):
        print(__doc__.strip() + "\n\nflags:\n" + FLAGS.module_help(config_lib) + "\n"
              + FLAGS.module_help(__name__))
        sys.exit(0)
    try:
        argv = FLAGS(config_lib.respell(argv))
    except flags.Error as e:
        print(f"{_prog()}: error: {e} (see --helpshort)", file=sys.stderr)
        sys.exit(2)
    if len(argv) > 1:
        print(f"{_prog()}: error: unexpected arguments: {' '.join(argv[1:])} (flags start with --)",
              file=sys.stderr)
        sys.exit(2)
    if FLAGS.keras == "3":  # Before anything imports keras; validate() refuses --backend with --keras 2.
        try:
            config_lib.use_backend(FLAGS.backend)
        except UsageError as e:
            print(f"{_prog()}: error: {e}", file=sys.stderr)
            sys.exit(2)
    return argv


def start(tflite_dir=None):
    """The program: quiet TensorFlow, parse flags, run. `tflite_dir`: default of --tflite_dir
    (else `tflite` under the working directory, beside `runs/`)."""
    with console.signals_stop():  # First: from here on a SIGTERM ends with one line.
        try:
            if tflite_dir is not None:
                FLAGS.set_default("tflite_dir", tflite_dir)
            # TensorFlow's own log lines show only when asked for with TF_CPP_MIN_LOG_LEVEL=0.
            console.quiet(_prog(), verbose=os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0")
            for caught in _LOADING:  # A mode package that does not load, say.
                warnings.warn(caught.message, stacklevel=1)
            app.run(main, flags_parser=parse_flags)
        except BaseException as e:  # Start-up and flag parsing included; C code may wrap the stop.
            if console.stop_of(e) is None:
                raise
            sys.exit(_stopped(e))
