"""What PEA costs in training: step time and peak memory, side by side in one run.

For each architecture and Keras flavour it trains, on the same random batch:
  relu         the plain network
  pea_blend    PEA while blending (alpha = 0.5): the fused custom-gradient op
  naive_blend  the same ensemble written as a*relu(x) + (1-a)*g(x) with autodiff
  pea_relu     PEA at alpha = 1 (only the ReLU branch runs)
  g_only       the network with g in place of every ReLU (the floor for blending)
Step times are medians of per-step wall times over repeats that interleave every flavour and
configuration, warm-up excluded. With both flavours it also prints Keras 3 / tf_keras step-time
ratios (what `train.py --keras`'s default rests on).
Memory is the training-time memory that grows with the batch: the peak resident set
size of a fresh process training at batch `--memory_batch` minus that of one training at
batch 64, so fixed costs (weights, tracing the graph) cancel out.

    python benchmarks/train_step.py                      # mobilenet_v2 and tiny, both flavours
    python benchmarks/train_step.py --arch mobilenet_v2 --flavor 3 --repeats 3 --steps 10
"""
import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

CONFIGS = ["relu", "pea_blend", "naive_blend", "pea_relu", "g_only"]
FLAVORS = {"3": "keras", "2": "tf_keras"}


def naive_g(k, name):
    """g as a plain registered function: no closed-form derivative, so PEALayer uses autodiff."""
    import pea_keras

    g = pea_keras.activations.get(name).g

    @k.saving.register_keras_serializable(package="benchmarks", name=f"naive_{name}")
    def naive(x):
        return g(x)

    return naive


def build(config, arch, k, args):
    import tensorflow as tf

    import pea_keras
    from pea_keras.training import archs

    model = archs.build(arch, k, (args.image_size, args.image_size, 3), 10, width=args.width)
    if config == "g_only":
        model = pea_keras.replace_relu(model, args.activation)
    elif config != "relu":
        # A g without a registered derivative takes the autodiff path: the naive ensemble.
        activation = naive_g(k, args.activation) if config == "naive_blend" else args.activation
        model = pea_keras.wrap(model, activation=activation, alpha=1.0 if config == "pea_relu" else 0.5)
        for layer in pea_keras.pea_layers(model):
            layer.enter_phase("relu" if config == "pea_relu" else "blend")  # As PEAScheduler does.
    model.compile(k.optimizers.SGD(0.01, momentum=0.9),
                  k.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.image_size, args.image_size, 3), dtype=np.float32)
    y = rng.integers(0, 10, args.batch).astype("int32")
    data = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(2)
    return model, data


class StepTimer:
    """Per-batch wall times, reported through a Keras callback of either flavour."""

    def __init__(self, k):
        timer = self

        class Callback(k.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                timer.start = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                timer.times.append(time.perf_counter() - timer.start)

        self.callback, self.times = Callback(), []


def peak_rss_mb():
    """This process's peak resident set size. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent through fork and exec, so a child started by a large parent reports its peak."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024.0


def time_steps(model, data, k, steps):
    timer = StepTimer(k)
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer.callback])
    return timer.times


def peak_memory_mb(config, arch, flavor, args):
    """Peak RSS of a process training at --memory_batch minus one training at batch 64."""
    def peak(batch):
        command = [sys.executable, __file__, "--_memory", config, "--arch", arch, "--flavor", flavor,
                   "--memory_batch", str(batch), "--image_size", str(args.image_size),
                   "--width", str(args.width), "--activation", args.activation]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])["mb"]

    return peak(args.memory_batch) - peak(64)


def memory_child(args):
    k = importlib.import_module(FLAVORS[args.flavor])
    args.batch = args.memory_batch
    model, data = build(args._memory, args.arch[0], k, args)
    model.fit(data, steps_per_epoch=5, epochs=1, verbose=0)
    print(json.dumps({"mb": peak_rss_mb()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["mobilenet_v2", "tiny"])
    parser.add_argument("--flavor", nargs="+", default=["3", "2"], choices=sorted(FLAVORS))
    parser.add_argument("--activation", default="silu")
    parser.add_argument("--width", type=float, default=0.35)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--memory_batch", type=int, default=320)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no_memory", action="store_true")
    parser.add_argument("--json", help="also write the table to this file")
    parser.add_argument("--_memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory:
        args.flavor = args.flavor[0]
        return memory_child(args)
    warnings.filterwarnings("ignore")
    built = {}  # (flavor, arch, config) -> (model, data); flavours interleave like configurations.
    for flavor in args.flavor:
        k = importlib.import_module(FLAVORS[flavor])
        for arch in args.arch:
            for config in CONFIGS:
                built[flavor, arch, config] = (*build(config, arch, k, args), k)
    for model, data, k in built.values():
        time_steps(model, data, k, 3)  # Trace and warm up.
    times = {key: [] for key in built}
    for _ in range(args.repeats):  # Interleaved, so drift hits every flavour and configuration alike.
        for key, (model, data, k) in built.items():
            times[key].append(statistics.median(time_steps(model, data, k, args.steps)))
    rows = []
    for (flavor, arch, config), per_repeat in times.items():
        mb = None if args.no_memory else peak_memory_mb(config, arch, flavor, args)
        rows.append({"keras": FLAVORS[flavor], "arch": arch, "config": config,
                     "ms": 1000 * statistics.median(per_repeat), "mb": mb})
    print(f"\n{'keras':9s} {'arch':14s} {'config':12s} {'ms/step':>8s} {'x relu':>7s} {'act MB':>8s} {'x relu':>7s}")
    for row in rows:
        base = next(r for r in rows
                    if r["keras"] == row["keras"] and r["arch"] == row["arch"] and r["config"] == "relu")
        mem = "" if row["mb"] is None else f"{row['mb']:8.0f} {row['mb'] / base['mb']:7.2f}"
        print(f"{row['keras']:9s} {row['arch']:14s} {row['config']:12s} {row['ms']:8.1f} "
              f"{row['ms'] / base['ms']:7.2f} {mem}")
    if len(args.flavor) == 2:
        print(f"\n{'arch':14s} {'config':12s} {'keras 3 / tf_keras step time':>30s}")
        for row in (r for r in rows if r["keras"] == "keras"):
            other = next(r for r in rows if r["keras"] == "tf_keras" and r["arch"] == row["arch"]
                         and r["config"] == row["config"])
            print(f"{row['arch']:14s} {row['config']:12s} {row['ms'] / other['ms']:30.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
