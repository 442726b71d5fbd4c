"""Measures one PEA training step in Keras 3 against tf_keras on this machine.

`train.py --keras` defaults to the flavour that trains faster here; this is how that was measured:

    python -m pea_keras.training.steptime --arch mobilenet_v2 --image_size 32 --batch_size 64

Each flavour runs in its own subprocess (a fresh TensorFlow, so they do not share thread pools
or caches); the median over `--steps` timed steps after `--warmup` steps is printed as JSON.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import argparse


def measure(flavour, arch, width, image_size, batch_size, steps, warmup):
    """Median seconds per `fit` step of the PEA-wrapped `arch` in Keras `flavour` ("3" or "2")."""
    import numpy as np

    import pea_keras
    from pea_keras.training import archs

    if flavour == "3":
        import keras as K
    else:
        import tf_keras as K
    K.utils.set_random_seed(0)
    model = pea_keras.wrap(archs.build(arch, K, (image_size, image_size, 1), 10, width), alpha=0.5)
    model.compile(K.optimizers.Adam(1e-3), K.losses.CategoricalCrossentropy(from_logits=True))
    x = np.random.rand(batch_size, image_size, image_size, 1).astype("float32")
    y = np.eye(10, dtype="float32")[np.random.randint(0, 10, batch_size)]
    times = []

    class Timer(K.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(x, y, batch_size=batch_size, epochs=warmup + steps, verbose=0, callbacks=[Timer()])
    return statistics.median(times[warmup:])


def main(argv=None):
    # argparse, not absl flags: train.py's absl flags share these names in one process.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2", help="Architecture (see train.py --arch).")
    parser.add_argument("--width", type=float, default=1.0, help="Width multiplier.")
    parser.add_argument("--image_size", type=int, default=32, help="Input side in pixels.")
    parser.add_argument("--batch_size", type=int, default=64, help="Batch size.")
    parser.add_argument("--steps", type=int, default=20, help="Timed steps.")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed steps first (tracing).")
    parser.add_argument("--only", choices=["3", "2"], help="Measure one flavour here (internal).")
    FLAGS = parser.parse_args(argv)
    if FLAGS.only:
        print(json.dumps({"seconds": measure(FLAGS.only, FLAGS.arch, FLAGS.width, FLAGS.image_size,
                                             FLAGS.batch_size, FLAGS.steps, FLAGS.warmup)}))
        return
    result = {"arch": FLAGS.arch, "width": FLAGS.width, "image_size": FLAGS.image_size,
              "batch_size": FLAGS.batch_size, "cpu_count": os.cpu_count()}
    for flavour in ("3", "2"):
        out = subprocess.run(
            [sys.executable, "-m", "pea_keras.training.steptime", f"--only={flavour}",
             f"--arch={FLAGS.arch}", f"--width={FLAGS.width}", f"--image_size={FLAGS.image_size}",
             f"--batch_size={FLAGS.batch_size}", f"--steps={FLAGS.steps}", f"--warmup={FLAGS.warmup}"],
            check=True, capture_output=True, text=True).stdout
        result[f"keras{flavour}_step_s"] = json.loads(out.strip().splitlines()[-1])["seconds"]
    result["tf_keras_speedup"] = result["keras3_step_s"] / result["keras2_step_s"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
