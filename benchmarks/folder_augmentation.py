"""Does train.py's default augmentation let a user's folder of small images learn?

Writes a folder of greyscale 28x28 PNGs of handwritten digits in ten class folders (scikit-learn's
1,797 scans scaled up, then again rotated by up to 10 degrees until --images), then runs
`train.py --dataset folder:DIR` as a user would, once with the defaults and once with
`--noaugment`, and prints the test top-1 of each.

    python benchmarks/folder_augmentation.py            # 3,000 images, mobilenet_v2, 4 epochs
    python benchmarks/folder_augmentation.py --quick    # 400 images, tiny, 2 epochs (a smoke test)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import common
import numpy as np
from common import REPO

from pea_keras import files


def write_folder(root, n_images, seed=0):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for i in range(n_images):
        j = i % len(digits.target)
        image = Image.fromarray((digits.images[j] * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR)
        if i >= len(digits.target):
            image = image.rotate(float(rng.uniform(-10, 10)), resample=Image.BILINEAR)
        folder = os.path.join(root, str(digits.target[j]))
        os.makedirs(folder, exist_ok=True)
        image.save(os.path.join(folder, f"{i:04d}.png"))


def train(folder, out, args, *flags):
    """metrics.json of one train.py run on the folder."""
    command = [sys.executable, os.path.join(REPO, "train.py"), "--arch", args.arch,
               f"--dataset=folder:{folder}", "--image_size=32", f"--epochs={args.epochs}",
               "--verbose=0", f"--output_dir={out}", f"--tflite_dir={out}_tflite", *flags]
    if args.quick:
        command.append("--noexport")
    done = subprocess.run(command, capture_output=True, text=True, env=common.child_env())
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="400 images, tiny, 2 epochs, no export")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.quick:
        args.images, args.arch, args.epochs = 400, "tiny", 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "digits28")
        write_folder(folder, args.images)
        rows = []
        for name, flags in (("defaults", ()), ("--noaugment", ("--noaugment",))):
            m = train(folder, os.path.join(tmp, name.strip("-")), args, *flags)
            rows.append({"run": name, "augmentation": m["augmentation"]["description"],
                         "train_examples": m["examples"]["train"], **m["top1"]})
    print(f"{args.arch}, {args.images} images of 28 px at 32 px, {args.epochs} epochs; test top-1:")
    for r in rows:
        int8 = f", int8 {100 * r['int8']:.2f} %" if "int8" in r else ""
        print(f"  {r['run']:<12} float {100 * r['stripped']:.2f} %{int8}  ({r['augmentation']})")
    if args.json:
        files.atomic_write_json(args.json, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
