r"""Train a compact network with Progressive Ensemble Activations and deploy it as int8 ReLU.

    python train.py --arch mobilenet_v2                  # offline default: digits, ~3 min on 2 CPUs
    python train.py --arch mobilenet_v2 --compare        # ReLU baseline vs PEA, same seed and data
    python train.py --task segmentation --compare        # Lite R-ASPP on digit scenes, mIoU
    python train.py --arch mobilenet_v2 --dataset imagenet2012 --data_dir ~/tensorflow_datasets \
        --image_size 224 --epochs 150 --batch_size 1024 --optimizer sgd --lr 0.4 \
        --warmup_epochs 5 --weight_decay 4e-5 --label_smoothing 0.1 --bn_momentum 0.99 \
        --strategy mirrored                              # ImageNet on every local GPU

One run writes a run directory (models, metrics.json, history.csv, TensorBoard logs, plots) and
the int8 TFLite file into --tflite_dir. Mistakes in flags or data print one line and exit 2.
"""

import os
import sys

from absl import app, flags

_REPO = os.path.dirname(os.path.abspath(__file__))

FLAGS = flags.FLAGS

# What is trained.
flags.DEFINE_string("task", "classification",
                    "What to train: classification (scored by top-1) or segmentation (per-pixel "
                    "classes, scored by mean IoU). Unset --arch, --dataset and --image_size take "
                    "the task's defaults.")
flags.DEFINE_string("arch", "",
                    "Network. Classification (default mobilenet_v2): mobilenet_v1, mobilenet_v2, "
                    "mobilenet_v3_small, mobilenet_v3_large (the ReLU-only minimalistic "
                    "variants), resnet18, resnet50, tiny (a microcontroller-sized CNN). "
                    "Segmentation (default lraspp_mobilenet_v2): lraspp_mobilenet_v2, "
                    "deeplabv3_mobilenet_v2 (MobileNetV2 backbone, output stride 16).")
flags.DEFINE_float("width", 1.0, "Width multiplier (the MobileNet alpha; mobilenet_v2 accepts "
                   "0.35, 0.5, 0.75, 1.0, 1.3, 1.4).")
flags.DEFINE_integer("image_size", 0, "Input side in pixels; 0 = the dataset's default (32 for "
                     "digits and CIFAR, 224 otherwise; segmentation: 64 for digit_scenes, 256 "
                     "for folders, 512 for cityscapes, whose width is twice the height). "
                     "MobileNets need >= 32; segmentation needs a multiple of 16.")
flags.DEFINE_float("bn_momentum", 0.9, "BatchNormalization momentum for every BN layer "
                   "(keras.applications' 0.999 leaves short runs at chance on evaluation).")
flags.DEFINE_enum("mode", "pea", ["pea", "relu", "novel"],
                  "pea: ReLU and g blended by a schedule, then stripped to ReLU; relu: plain ReLU "
                  "baseline; novel: g everywhere (alpha = 0, an upper bound that cannot be "
                  "deployed ReLU-only).")
flags.DEFINE_bool("compare", False, "Train the ReLU baseline and PEA with the same seed and data "
                  "order and report PEA minus ReLU (writes <output_dir>/{relu,pea}/ and "
                  "compare.json).")
flags.DEFINE_string("activation", "silu", "The novel activation g: a name from "
                    "pea_keras.activations.names() (silu, gelu, mish, hard_swish, elu, ...).")
flags.DEFINE_enum("schedule", "cosine", ["linear", "cosine", "step", "constant"],
                  "How alpha moves from 0 to 1 between --pea_start and --pea_end "
                  "(constant: alpha = 1, i.e. ReLU with PEA layers).")
flags.DEFINE_float("pea_start", 0.0, "Fraction of training where alpha starts rising from 0.")
flags.DEFINE_float("pea_end", 0.75, "Fraction of training where alpha reaches 1 (must be < 1 "
                   "so that the last steps train the pure ReLU network).")

# Data.
flags.DEFINE_string("dataset", "",
                    "Classification (default digits): digits (scikit-learn's handwritten digits, "
                    "offline), a TFDS name (cifar10, imagenette, imagenet2012, ...) or folder:PATH "
                    "(one sub-folder of images per class). Segmentation (default digit_scenes): "
                    "digit_scenes (scenes of scikit-learn digits, 11 classes, generated offline "
                    "from --seed), cityscapes (TFDS, manual download, 19 classes) or folder:PATH "
                    "(PATH/images/ and PATH/masks/, masks of class indices, 255 = ignore).")
flags.DEFINE_string("data_dir", None, "TFDS data directory (default: ~/tensorflow_datasets).")
flags.DEFINE_enum("download", "auto", ["auto", "always", "never"],
                  "TFDS download: auto = only when the download host is reachable.")
flags.DEFINE_bool("augment", True, "Random crop and flip for natural images (never for digits).")

# Optimisation.
flags.DEFINE_integer("epochs", 15, "Training epochs.")
flags.DEFINE_integer("steps_per_epoch", 0, "Steps per epoch; 0 = one pass over the training split.")
flags.DEFINE_integer("batch_size", 64, "Global batch size (split over replicas).")
flags.DEFINE_float("lr", 2e-3, "Peak learning rate (cosine decay to 0).")
flags.DEFINE_float("warmup_epochs", 0.0, "Linear learning-rate warm-up, in epochs.")
flags.DEFINE_enum("optimizer", "adam", ["sgd", "adam", "adamw", "rmsprop"],
                  "Optimizer (sgd uses Nesterov momentum --momentum).")
flags.DEFINE_float("momentum", 0.9, "Momentum of sgd and rmsprop.")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (adamw: default 1e-4 when 0).")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the cross-entropy.")
flags.DEFINE_integer("seed", 0, "Seed of initialisation, data order and augmentation.")

# Runtime.
flags.DEFINE_enum("keras", "2", ["3", "2"], "Model flavour: 3 = keras, 2 = tf_keras. Default 2: "
                  "measured faster per step on CPU (python benchmarks/train_step.py).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multiworker", "tpu"],
                  "tf.distribute strategy: mirrored = all local GPUs, multiworker = TF_CONFIG "
                  "cluster, tpu = --tpu.")
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy tpu ('' = local).")
flags.DEFINE_string("output_dir", "", "Run directory; default runs/<arch>_<mode>_<dataset> "
                    "(runs/<arch>_compare_<dataset> with --compare).")
flags.DEFINE_bool("overwrite", False, "Replace an earlier run in --output_dir and its int8 file "
                  "in --tflite_dir (without it, train.py refuses to touch them).")
flags.DEFINE_bool("resume", False, "Continue the run in --output_dir from its last checkpoint "
                  "(same alpha and learning rate as if never interrupted).")
flags.DEFINE_string("verbose", "auto", "Keras fit verbosity: 0, 1 (progress bar), 2 (one line "
                    "per epoch), auto (1 on a terminal, else 2).")

# Deployment.
flags.DEFINE_bool("export", True, "Write the int8 TFLite file (--noexport to skip).")
flags.DEFINE_integer("qat_epochs", 0, "Quantization-aware fine-tuning epochs before int8 export.")
flags.DEFINE_string("tflite_dir", os.path.join(_REPO, "tflite"), "Folder for the int8 .tflite file.")
flags.DEFINE_integer("calibration_examples", 256, "Training images used to calibrate int8.")
flags.DEFINE_integer("tflite_eval_examples", 0, "Test examples scored on LiteRT; 0 = all.")


def config_from_flags():
    import dataclasses

    from pea_keras.training.run import RunConfig
    names = [f.name for f in dataclasses.fields(RunConfig)]
    return RunConfig(**{n: FLAGS[n].value for n in names})


def main(argv):
    del argv  # parse_flags rejected positional arguments.
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # TensorFlow's Python INFO lines are noise here.
    from pea_keras.training import errors, run

    config = config_from_flags()
    from pea_keras.tflite import TFLiteError

    try:
        if FLAGS.compare:
            run.compare(config)
        else:
            run.run(config)
    except errors.UsageError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except TFLiteError as e:
        print(f"train.py: error: int8 export failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("train.py: interrupted; continue from the last epoch's checkpoint with the same "
              "flags plus --resume", file=sys.stderr)
        return 130
    return 0


def parse_flags(argv):
    """absl's parsing, but a bad flag is one line on stderr and exit status 2."""
    try:
        argv = FLAGS(argv)
    except flags.Error as e:
        print(f"train.py: error: {e} (see --helpshort)", file=sys.stderr)
        sys.exit(2)
    if len(argv) > 1:
        print(f"train.py: error: unexpected arguments: {' '.join(argv[1:])} (flags start with --)",
              file=sys.stderr)
        sys.exit(2)
    return argv


def _quiet_tensorflow():
    # Before TensorFlow loads: keep its C++ start-up chatter out of the user's terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


if __name__ == "__main__":
    _quiet_tensorflow()
    app.run(main, flags_parser=parse_flags)
