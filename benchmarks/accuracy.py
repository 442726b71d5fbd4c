"""Does PEA help? Accuracy of ReLU, PEA and g-only networks over seeds, side by side in one run.

For each data variant and seed it trains, from the same initial weights and on the same batches:
  relu        the plain ReLU network
  pea_<g>     PEA with g in {silu, gelu, mish}: PEAScheduler with its default schedule
              (cosine, alpha 0 -> 1 over the first 75 % of steps), then pea_keras.strip
  g_<g>       the network with g everywhere: PEA-wrapped, PEAScheduler(Constant(0))
and measures test accuracy of
  float       the trained Keras model (PEA at alpha = 1; g-only with g)
  stripped    pea_keras.strip(model) (g-only: strip(force=True), g's weights under ReLU)
  int8        the full-integer TFLite file (pea_keras.tflite.quantize of the stripped model;
              g-only: of the g network), run on LiteRT's builtin kernels
and the paired difference config - relu over seeds (mean, std, paired t, wins/ties/losses).

The recipe is the product's (`train.py` defaults): Adam 2e-3 with cosine decay, batch 64,
BatchNorm momentum 0.9, the `tiny` arch. The test split is evaluated once per trained model
after the final epoch; nothing is selected on it.

Data variants (scikit-learn digits, offline; the split seed is fixed so every run sees the
same test set):
  digits      the default split (1,257 train / 360 test) resized to --image_size
  digits_hard 400 training images (40 per class, fixed), Gaussian pixel noise sigma 0.3 on
              train and test (fixed noise), same image size; 30 epochs at batch 32

    python benchmarks/accuracy.py                   # the full run (~25 min on 2 cores)
    python benchmarks/accuracy.py --quick           # smoke run: 2 seeds, 3 epochs, 2 configs
"""
import argparse
import importlib
import os
import statistics
import time
import warnings

import common
import numpy as np
from common import FLAVORS
from paired_stats import paired

from pea_keras import files

ACTIVATIONS = ["silu", "gelu", "mish"]
CONFIGS = ["relu"] + [f"pea_{g}" for g in ACTIVATIONS] + [f"g_{g}" for g in ACTIVATIONS]
MEASURES = ["float", "stripped", "int8"]
VARIANTS = {
    "digits": dict(train_examples=None, noise=0.0, epochs=15, batch=64),
    "digits_hard": dict(train_examples=400, noise=0.3, epochs=30, batch=32),
}
SPLIT_SEED = 0
NOISE_SEED = 1234
CALIBRATION_EXAMPLES = 256


def load_variant(name, image_size):
    """(x_train, y_train, x_test, y_test) of a data variant; the same arrays for every seed."""
    from pea_keras.data.digits import load_digits_split

    spec = VARIANTS[name]
    split = load_digits_split(image_size, channels=1, seed=SPLIT_SEED)
    (x_train, y_train), (x_test, y_test) = split["train"], split["test"]
    if spec["train_examples"]:
        from sklearn.model_selection import train_test_split
        x_train, _, y_train, _ = train_test_split(
            x_train, y_train, train_size=spec["train_examples"], random_state=SPLIT_SEED,
            stratify=y_train)
    if spec["noise"]:
        rng = np.random.default_rng(NOISE_SEED)
        x_train = np.clip(x_train + rng.normal(0, spec["noise"], x_train.shape), 0, 1).astype(np.float32)
        x_test = np.clip(x_test + rng.normal(0, spec["noise"], x_test.shape), 0, 1).astype(np.float32)
    return x_train, y_train, x_test, y_test


def g_network(model, g_name):
    """`model` (wrapped or plain) with g in place of every ReLU/PEALayer, same weights."""
    import pea_keras

    return pea_keras.replace_relu(pea_keras.strip(model, force=True), g_name)


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def train_one(config, variant, seed, data, k, args):
    """Trains one model; returns {measure: test accuracy} and timing."""
    import tensorflow as tf

    import pea_keras
    from pea_keras.tflite import predict, quantize
    from pea_keras.training.tasks.classification import archs

    x_train, y_train, x_test, y_test = data
    spec = VARIANTS[variant]
    epochs = args.epochs or spec["epochs"]
    batch = spec["batch"]
    steps = len(x_train) // batch
    total = epochs * steps
    t0 = time.perf_counter()
    # Same initial weights and the same batches for every config of a seed (as train.py does).
    k.utils.set_random_seed(seed)
    ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
          .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True).repeat()
          .batch(batch, drop_remainder=True).prefetch(2))
    k.utils.set_random_seed(seed)
    model = archs.build(args.arch, k, x_train.shape[1:], 10, width=args.width, bn_momentum=0.9)
    callbacks = []
    if config != "relu":
        mode, g = config.split("_", 1)
        model = pea_keras.wrap(model, activation=g, alpha=0.0)
        schedule = (pea_keras.schedules.default(total) if mode == "pea"
                    else pea_keras.schedules.Constant(0.0))
        callbacks.append(pea_keras.PEAScheduler(schedule))
    lr = k.optimizers.schedules.CosineDecay(args.lr, total)
    model.compile(k.optimizers.Adam(lr), k.losses.SparseCategoricalCrossentropy(from_logits=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # g-only ends at alpha = 0 by design.
        model.fit(ds, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=callbacks)
    t_train = time.perf_counter() - t0

    result = {"float": accuracy(model, x_test, y_test)}
    stripped = pea_keras.strip(model, force=config.startswith("g_"))
    result["stripped"] = accuracy(stripped, x_test, y_test)
    deployed = g_network(model, config[2:]) if config.startswith("g_") else stripped
    calibration = x_train[:CALIBRATION_EXAMPLES]
    try:
        tflite = quantize(deployed, calibration)
        out = predict(tflite, x_test, runtime="litert")
        result["int8"] = float(np.mean(np.argmax(out, -1) == y_test))
        result["int8_bytes"] = len(tflite)
    except Exception as e:  # noqa: BLE001 (a g without an int8 kernel is a result, not a crash)
        result["int8"] = None
        result["int8_error"] = str(e).strip().splitlines()[0][:200]
    result["train_s"] = t_train
    result["total_s"] = time.perf_counter() - t0
    k.backend.clear_session()
    return result


def summarize(runs, variants, configs, seeds):
    table = []
    for variant in variants:
        for config in configs:
            for measure in MEASURES:
                acc = [runs.get((variant, config, s), {}).get(measure) for s in seeds]
                base = [runs.get((variant, "relu", s), {}).get(measure) for s in seeds]
                vals = [a for a in acc if a is not None]
                if not vals:
                    table.append({"variant": variant, "config": config, "measure": measure, "n": 0})
                    continue
                row = {"variant": variant, "config": config, "measure": measure, "n": len(vals),
                       "mean": statistics.fmean(vals),
                       "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
                if config != "relu":
                    row["diff"] = paired(acc, base)
                table.append(row)
    return table


def print_table(table):
    print(f"\n{'variant':12s} {'config':9s} {'measure':8s} {'n':>2s} {'mean %':>7s} {'std':>5s} "
          f"{'d vs relu':>9s} {'d std':>6s} {'t':>6s} {'p':>5s} {'W/T/L':>7s}")
    for r in table:
        if not r["n"]:
            print(f"{r['variant']:12s} {r['config']:9s} {r['measure']:8s}  -   (no int8 file: see JSON)")
            continue
        line = (f"{r['variant']:12s} {r['config']:9s} {r['measure']:8s} {r['n']:2d} "
                f"{100 * r['mean']:7.2f} {100 * r['std']:5.2f}")
        d = r.get("diff")
        if d:
            t = f"{d['t']:6.2f}" if d["t"] is not None else f"{'-':>6s}"
            p = f"{d['p']:5.3f}" if d["p"] is not None else f"{'-':>5s}"
            line += (f" {100 * d['mean']:+9.2f} {100 * d['std']:6.2f} {t} {p} "
                     f"{d['wins']}/{d['ties']}/{d['losses']}")
        print(line)


def plot_seeds(runs, variants, configs, seeds, path):
    plt = common.pyplot()
    fig, axes = plt.subplots(len(variants), len(MEASURES), figsize=(4.2 * len(MEASURES), 3.4 * len(variants)),
                             squeeze=False)
    for i, variant in enumerate(variants):
        for j, measure in enumerate(MEASURES):
            ax = axes[i][j]
            for c, config in enumerate(configs):
                ys = [runs.get((variant, config, s), {}).get(measure) for s in seeds]
                xs = [s + (c - len(configs) / 2) * 0.06 for s in seeds]
                pts = [(x, 100 * y) for x, y in zip(xs, ys) if y is not None]
                if pts:
                    style = "-o" if config == "relu" else ("--s" if config.startswith("g_") else "-^")
                    ax.plot(*zip(*pts), style, ms=4, lw=1, label=config,
                            color="black" if config == "relu" else None)
            ax.set_title(f"{variant}: {measure}")
            ax.set_xlabel("seed")
            ax.set_ylabel("test accuracy %")
            ax.set_xticks(seeds)
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    common.save_figure(fig, path)


def plot_schedules(path, total=1000):
    from pea_keras import schedules

    steps = np.arange(total + 1)
    fig, ax = common.pyplot().subplots(figsize=(6, 3.4))
    for label, s in [("Cosine.over(T)  (default: 0 -> 0.75 T)", schedules.default(total)),
                     ("Linear.over(T)", schedules.Linear.over(total)),
                     ("Step.over(T)", schedules.Step.over(total))]:
        ax.plot(steps / total, [s(int(t)) for t in steps], label=label)
    ax.set_xlabel("fraction of training steps T")
    ax.set_ylabel("alpha (weight of ReLU)")
    ax.set_title("PEA alpha schedules (pea_keras.schedules)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    common.save_figure(fig, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    parser.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--hard_seeds", type=int, default=None, help="seeds for digits_hard (default --seeds)")
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--image_size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=0, help="override every variant's epochs")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--keras", default="2", choices=sorted(FLAVORS))
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 3 epochs, relu and pea_silu")
    parser.add_argument("--json", default="docs/results/accuracy.json")
    parser.add_argument("--plot", default="docs/accuracy_seeds.png")
    parser.add_argument("--schedule_plot", default="docs/alpha_schedules.png")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.configs = 2, 3, ["relu", "pea_silu"]
        common.quick_paths(args, "json", "plot")
    if "relu" not in args.configs:
        args.configs = ["relu"] + args.configs
    warnings.filterwarnings("ignore")
    k = importlib.import_module(FLAVORS[args.keras])

    seeds_of = {v: list(range(args.seeds)) for v in args.variants}
    if args.hard_seeds is not None and "digits_hard" in seeds_of:
        seeds_of["digits_hard"] = list(range(args.hard_seeds))
    started = time.time()
    runs = {}
    for variant in args.variants:
        data = load_variant(variant, args.image_size)
        print(f"{variant}: {len(data[1])} train / {len(data[3])} test images at "
              f"{args.image_size}x{args.image_size}", flush=True)
        for seed in seeds_of[variant]:
            for config in args.configs:  # Interleaved so that load drift hits every config alike.
                r = train_one(config, variant, seed, data, k, args)
                runs[(variant, config, seed)] = r
                int8 = f"{100 * r['int8']:.2f}" if r["int8"] is not None else "n/a"
                print(f"  seed {seed} {config:9s} float {100 * r['float']:.2f}  stripped "
                      f"{100 * r['stripped']:.2f}  int8 {int8}  ({r['total_s']:.0f} s)", flush=True)
    all_seeds = sorted({s for v in seeds_of.values() for s in v})
    table = summarize(runs, args.variants, args.configs, all_seeds)
    print_table(table)

    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    files.atomic_write_json(args.json, {
        "command": common.command(), "started_utc": common.now(started), "wall_s": time.time() - started,
        **common.machine(), "keras_flavor": k.__name__, "keras_version": k.__version__,
        "args": vars(args), "variants": {v: VARIANTS[v] for v in args.variants},
        "seeds": seeds_of,
        "runs": [{"variant": v, "config": c, "seed": s, **r} for (v, c, s), r in runs.items()],
        "summary": table})
    plot_seeds(runs, args.variants, args.configs, all_seeds, args.plot)
    plot_schedules(args.schedule_plot)
    print(f"\nwrote {args.json}, {args.plot}, {args.schedule_plot}")


if __name__ == "__main__":
    main()
