r"""Train a compact network with Progressive Ensemble Activations and deploy it as int8 ReLU.

    python train.py --arch mobilenet_v2                  # offline default: digits, width 0.35 (MCU-sized)
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

from pea_keras.training.cli import FLAGS, main, parse_flags, start  # noqa: F401  (tests drive these)

if __name__ == "__main__":
    start(tflite_dir=os.path.join(os.path.dirname(os.path.abspath(__file__)), "tflite"))
