"""What PEA costs in training: step time and activation memory, as ratios measured in one run.

For each Keras flavor, network and resolution it builds, on one random batch:
  relu         the plain network
  pea_blend    PEA while blending (alpha = 0.5, the phase PEAScheduler traces): the fused op
  naive_blend  the same ensemble written as a*relu(x) + (1-a)*g(x) with autodiff
  pea_relu     PEA at alpha = 1 (the ReLU phase: the ReLU network's own graph)
  g_only       g in place of every ReLU (the floor for blending: it needs g(x) too)
and, with --configs, the other ways to a better ReLU network:
  surrogate    pea_keras.surrogate: ReLU forward, g' backward
  pea_kd       pea_blend distilled from a g-only teacher (pea_keras.distillation, its forward pass)
  pea_selfkd   pea_blend distilled from its own moving average (teacher forward and the average's update)
It times single training steps round-robin: every round runs one step of each configuration of a
group, starting from a different one each round, so load drift hits them alike. Each ratio
(against relu, and pea_blend against g_only and naive_blend) is taken within a round and reported
as the median with its interquartile range over rounds; the load average is recorded.
Memory is the training memory that grows with the batch: the peak RSS of a fresh process training
at batch `--memory_batch` minus that of one training at batch 64 (weights and tracing cancel).

`--check` exits 1 when, outside the noise it measured (the ratio's lower quartile above the
limit), pea_blend exceeds g_only by 5 % or pea_relu exceeds relu by 3 %, or (with memory)
pea_blend's memory exceeds naive_blend's or g_only's by 5 %.

    python benchmarks/train_step.py --check                      # MobileNetV2 0.35 and V3-Small, 32 and 96 px
    python benchmarks/train_step.py --arch mobilenet_v2 --image_size 32 --flavor 3 --rounds 20
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

import numpy as np
from common import FLAVORS

from pea_keras import files

CONFIGS = ["relu", "pea_blend", "naive_blend", "pea_relu", "g_only"]
METHODS = ["surrogate", "pea_kd", "pea_selfkd"]
WIDTHS = {"mobilenet_v2": 0.35, "mobilenet_v3_small": 1.0}
# (name, numerator, denominator, limit): the ratios --check holds to their limits.
RATIOS = [("pea_blend / relu", "pea_blend", "relu", None), ("naive_blend / relu", "naive_blend", "relu", None),
          ("g_only / relu", "g_only", "relu", None), ("pea_relu / relu", "pea_relu", "relu", 1.03),
          ("pea_blend / g_only", "pea_blend", "g_only", 1.05),
          ("pea_blend / naive_blend", "pea_blend", "naive_blend", None)]
METHOD_RATIOS = [("surrogate / relu", "surrogate", "relu", None), ("pea_kd / pea_blend", "pea_kd", "pea_blend", None),
                 ("pea_selfkd / pea_blend", "pea_selfkd", "pea_blend", None)]


def naive_g(k, name):
    """g as a plain registered function: no closed-form derivative, so PEALayer uses autodiff."""
    import pea_keras

    g = pea_keras.activations.get(name).g

    @k.saving.register_keras_serializable(package="benchmarks", name=f"naive_{name}")
    def naive(x):
        return g(x)

    return naive


def build(config, arch, size, k, activation, batch):
    """(model, one_step): `one_step()` runs one compiled training step on a fixed batch."""
    import tensorflow as tf

    import pea_keras
    from pea_keras import distillation
    from pea_keras.training.tasks.classification import archs

    model = archs.build(arch, k, (size, size, 3), 10, width=WIDTHS.get(arch, 1.0))
    trainer, updates = model, []
    if config == "g_only":
        trainer = model = pea_keras.replace_relu(model, activation)
    elif config == "surrogate":
        trainer = model = pea_keras.surrogate(model, activation)
    elif config != "relu":
        g = naive_g(k, activation) if config == "naive_blend" else activation
        teacher = pea_keras.replace_relu(model, activation) if config == "pea_kd" else "self"
        trainer = model = pea_keras.wrap(model, activation=g, alpha=1.0 if config == "pea_relu" else 0.5)
        for layer in pea_keras.pea_layers(model):
            layer.enter_phase("relu" if config == "pea_relu" else "blend")  # As PEAScheduler does.
        if config in ("pea_kd", "pea_selfkd"):
            trainer = distillation.distiller(model, teacher)
            updates = [u._update for u in trainer.teacher_updates]  # What the callback runs after each step.
    trainer.compile(k.optimizers.SGD(0.01, momentum=0.9), k.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype("int32")
    batches = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    trainer.make_train_function()
    train = trainer.train_function

    def one_step():
        logs = train(batches)
        for update in updates:
            update()
        return float(np.asarray(logs["loss"]))  # Waits for the step to finish.

    return model, one_step


def peak_rss_mb():
    """This process's peak resident set size. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent through fork and exec, so a child started by a large parent reports its peak."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024.0


def memory_mb(group, config, args):
    """Peak RSS of a process training at --memory_batch minus one training at batch 64."""
    flavor, arch, size = group

    def peak(batch):
        command = [sys.executable, __file__, "--_memory", config, "--arch", arch, "--flavor", flavor,
                   "--image_size", str(size), "--memory_batch", str(batch), "--activation", args.activation]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])["mb"]

    return peak(args.memory_batch) - peak(64)


def memory_child(args):
    k = importlib.import_module(FLAVORS[args.flavor[0]])
    _, one_step = build(args._memory, args.arch[0], args.image_size[0], k, args.activation, args.memory_batch)
    for _ in range(5):
        one_step()
    print(json.dumps({"mb": peak_rss_mb()}))


def spread(values):
    """Median and interquartile range."""
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {"median": median, "q1": q1, "q3": q3}


def time_group(group, args):
    """{config: [seconds per round]}: one step of every configuration per round, rotated."""
    flavor, arch, size = group
    k = importlib.import_module(FLAVORS[flavor])
    configs = CONFIGS + args.configs
    steps = {c: build(c, arch, size, k, args.activation, args.batch)[1] for c in configs}
    for one_step in steps.values():
        for _ in range(args.warmup):  # Trace, then warm the caches and thread pools.
            one_step()
    times = {c: [] for c in configs}
    for r in range(args.rounds):
        for c in configs[r % len(configs):] + configs[:r % len(configs)]:
            start = time.perf_counter()
            steps[c]()
            times[c].append(time.perf_counter() - start)
    return times


def measure(group, args):
    row = {"keras": FLAVORS[group[0]], "arch": group[1], "image_size": group[2], "batch": args.batch,
           "activation": args.activation, "rounds": args.rounds}
    if args.rounds:
        row["load_before"] = os.getloadavg()[0]
        times = time_group(group, args)
        row.update(load_after=os.getloadavg()[0], ms={c: 1000 * statistics.median(t) for c, t in times.items()},
                   ratios={name: spread([a / b for a, b in zip(times[num], times[den])])
                           for name, num, den, _ in RATIOS + METHOD_RATIOS if num in times})
    if args.memory:
        row["mb"] = {c: memory_mb(group, c, args) for c in CONFIGS}
    return row


def failures(row):
    """Why a group fails --check: each limit its ratio clearly exceeds."""
    ratios = row.get("ratios", {})
    found = [f"{name} {ratios[name]['median']:.3f} (lower quartile {ratios[name]['q1']:.3f}) > {limit}"
             for name, _, _, limit in RATIOS if limit and name in ratios and ratios[name]["q1"] > limit]
    mb = row.get("mb")
    if mb and mb["pea_blend"] > mb["naive_blend"]:
        found.append(f"pea_blend memory {mb['pea_blend']:.0f} MB > naive_blend {mb['naive_blend']:.0f} MB")
    if mb and mb["pea_blend"] > 1.05 * mb["g_only"]:
        found.append(f"pea_blend memory {mb['pea_blend']:.0f} MB > 1.05 x g_only {mb['g_only']:.0f} MB")
    return found


def table(rows):
    names = [n for n, *_ in RATIOS + METHOD_RATIOS if any(n in r.get("ratios", {}) for r in rows)]
    lines = [f"{'keras':9s} {'arch':19s} {'px':>3s} {'load':>9s}  " + "  ".join(f"{n:>23s}" for n in names)]
    for row in (r for r in rows if "ratios" in r):
        cells = [f"{s['median']:.3f} [{s['q1']:.3f}, {s['q3']:.3f}]" for s in map(row["ratios"].get, names)]
        lines.append(f"{row['keras']:9s} {row['arch']:19s} {row['image_size']:3d} "
                     f"{row['load_before']:4.1f}-{row['load_after']:<4.1f}  " + "  ".join(f"{c:>23s}" for c in cells))
    if any("mb" in row for row in rows):
        header = f"{'keras':9s} {'arch':19s} {'px':>3s}  activation MB: "
        lines += ["", header + "  ".join(f"{c:>11s}" for c in CONFIGS)]
        for row in (r for r in rows if "mb" in r):
            lines.append(f"{row['keras']:9s} {row['arch']:19s} {row['image_size']:3d}                 "
                         + "  ".join(f"{row['mb'][c]:11.0f}" for c in CONFIGS))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["mobilenet_v2", "mobilenet_v3_small"])
    parser.add_argument("--image_size", nargs="+", type=int, default=[32, 96])
    parser.add_argument("--flavor", nargs="+", default=["3", "2"], choices=sorted(FLAVORS))
    parser.add_argument("--activation", default="silu")
    parser.add_argument("--configs", nargs="*", default=[], choices=METHODS, help="also time these")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=40,
                        help="timed steps of each configuration (0: memory only, which load does not change)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--memory_batch", type=int, default=320)
    parser.add_argument("--no_memory", dest="memory", action="store_false")
    parser.add_argument("--check", action="store_true", help="exit 1 if a ratio clearly exceeds its limit")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--_memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory:
        return memory_child(args)
    warnings.filterwarnings("ignore")
    rows = [measure((f, a, s), args) for f in args.flavor for a in args.arch for s in args.image_size]
    print(table(rows))
    if args.json:
        command = " ".join(["python benchmarks/train_step.py", *sys.argv[1:]])
        files.atomic_write_json(args.json, {"command": command, "cpus": os.cpu_count(), "rows": rows})
    problems = [f"{r['keras']} {r['arch']} {r['image_size']} px: {p}" for r in rows for p in failures(r)]
    if args.check:
        print("\n".join(["", *problems]) if problems else "\ncheck passed")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
