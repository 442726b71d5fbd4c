"""What `pea-tflite convert` costs over the bare TFLite converter, each as a whole process.

Both start a fresh Python, load a MobileNetV2 (width 0.35, random weights, 96x96x3 by default)
and quantize it to full int8 (int8 input and output) on the same calibration images:
  bare     `tf.lite.TFLiteConverter.from_keras_model` on the ReLU model, file written
  convert  `pea-tflite convert` (as `python -m pea_keras.tflite`, so PYTHONPATH picks the code) on
           the PEA model (alpha 1): strip, quantize, prove the file
           ReLU-only, load-test it on TensorFlow Lite Micro, write the file and its kit
Runs interleave (bare, convert, bare, ...), so load drift hits both alike; the ratio is taken
per repeat and reported as the median with the range.

    python benchmarks/convert_cost.py                 # 3 repeats
    python benchmarks/convert_cost.py --image_size 32 --repeats 1
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import common

from pea_keras import files

BARE = """
import sys
import numpy as np
import keras
import tensorflow as tf

model = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])
converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = converter.inference_output_type = tf.int8
with open(sys.argv[3], "wb") as f:
    f.write(converter.convert())
"""


def prepare(tmp, image_size, samples):
    """The PEA model, its ReLU network and the calibration images, saved in `tmp`."""
    import keras
    import numpy as np

    import pea_keras
    from pea_keras.training.tasks.classification import archs

    model = archs.build("mobilenet_v2", keras, (image_size, image_size, 3), 10, width=0.35)
    pea = pea_keras.wrap(model, alpha=1.0)
    paths = {name: os.path.join(tmp, name) for name in ("pea.keras", "relu.keras", "calib.npy")}
    pea.save(paths["pea.keras"])
    pea_keras.strip(pea).save(paths["relu.keras"])
    np.save(paths["calib.npy"], np.random.default_rng(0).random((samples, image_size, image_size, 3), np.float32))
    return paths


def timed(command, env):
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--samples", type=int, default=300, help="calibration images (pea-tflite's default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    env = common.child_env()
    with tempfile.TemporaryDirectory(prefix="pea-convert-cost-") as tmp:
        paths = prepare(tmp, args.image_size, args.samples)
        bare = [sys.executable, "-c", BARE, paths["relu.keras"], paths["calib.npy"], os.path.join(tmp, "bare.tflite")]
        out = os.path.join(tmp, "pea.tflite")
        convert = [sys.executable, "-m", "pea_keras.tflite", "convert", paths["pea.keras"], "-o", out,
                   "--calib", paths["calib.npy"], "--calib_samples", str(args.samples), "--overwrite"]
        seconds = {"bare": [], "convert": []}
        load = [os.getloadavg()[0]]
        for _ in range(args.repeats):
            seconds["bare"].append(timed(bare, env))
            seconds["convert"].append(timed(convert, env))
        load.append(os.getloadavg()[0])
    ratios = [c / b for b, c in zip(seconds["bare"], seconds["convert"])]
    result = {"command": " ".join(["python benchmarks/convert_cost.py", *sys.argv[1:]]), "image_size": args.image_size,
              "samples": args.samples, "seconds": seconds, "ratios": ratios, "ratio_median": statistics.median(ratios),
              "load": load}
    print(f"bare converter {statistics.median(seconds['bare']):.1f} s, pea-tflite convert "
          f"{statistics.median(seconds['convert']):.1f} s (medians of {args.repeats}); convert / bare "
          f"{result['ratio_median']:.2f} (per repeat {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"load {load[0]:.1f}-{load[1]:.1f}")
    if args.json:
        files.atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
