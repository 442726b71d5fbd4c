"""Does PEA help compact networks? MobileNets at 32x32 on digits, paired by seed, with ablations.

Every run is `python train.py --arch ARCH --width W --keras 2` with the configuration's settings:
it trains through `pea_keras.training.run.run`, the chain train.py runs (data split and pipeline,
model, wrap, BatchNorm momentum 0.9, Adam 2e-3 with cosine decay to 0, batch 64, 15 epochs, one
pass per epoch, seeding, strip, int8 export and scoring), with its run directory in a scratch
folder; ablations are `modes.Ablation` modes. The seed sets the data split, the batch order and the
initial weights; every configuration of a seed starts from the same weights and sees the same
batches, so differences are paired. Configurations:

  relu             the plain ReLU network
  pea_<g>          PEA with g (silu, gelu, mish, hard_swish): cosine schedule, alpha 0 -> 1 over the
                   first 75 % of steps (the defaults), then pea_keras.strip
  g_silu           g everywhere (alpha = 0; an upper bound that cannot be deployed ReLU-only)
  relu_equal_cost  ReLU trained for round(15 * r) epochs, r = the PEA/ReLU ratio of training CPU
                   seconds measured on the relu and pea_silu runs of this benchmark (median over
                   seeds, frozen once two pairs exist), so it costs what PEA costs
  sched_linear, sched_step     PEA silu with another schedule shape
  end_0.5, end_0.9             PEA silu with alpha reaching 1 at 50 % / 90 % of training
  fixed_0.5        alpha held at 0.5 throughout, then stripped by force (no progression)
  learned_alpha    alpha a trainable weight of each PEALayer (from 0, clipped to [0, 1]), then
                   stripped by force
  relu_keras3, pea_silu_keras3   relu and pea_silu under Keras 3 (train.py's default flavour)
                   instead of tf_keras; paired with each other, not with the tf_keras runs

Each trained model is scored once, after the last epoch, on the test split (nothing is selected
on it): float (the trained Keras model), stripped (the ReLU network: pea_keras.strip, by force for
fixed_0.5 and learned_alpha) and int8 (train.py's int8 file of the stripped network, 256 training
images calibrate it) on LiteRT; g_silu, which cannot deploy ReLU-only, has float only.

The benchmark is resumable: each finished (arch, config, seed) is written to the JSON at once and
skipped on restart; workers share one JSON, each taking every N-th job of the plan. Jobs run in
priority order and seeds round-robin inside a priority, so every configuration of a block has
comparable seeds whenever it is stopped.

    python benchmarks/compact_accuracy.py --threads 1 --worker 0/2 &
    python benchmarks/compact_accuracy.py --threads 1 --worker 1/2 &
    python benchmarks/compact_accuracy.py --report           # tables, plot, ablations.json
    python benchmarks/compact_accuracy.py --quick            # smoke: 2 seeds, 2 epochs
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import results_store
from paired_stats import gap_fraction, markdown, paired_rows
from results_store import locked

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


MEASURES = ("float", "stripped", "int8")
EPOCHS = 15
KERAS = "2"  # tf_keras: the flavour every recorded run used (train.py's default was then "2").
WIDTHS = {"mobilenet_v2": 0.35, "mobilenet_v3_small": 1.0}
CONFIGS = {
    "relu": dict(mode="relu"),
    "pea_silu": dict(mode="pea", activation="silu"),
    "relu_equal_cost": dict(mode="relu", equal_cost=True),
    "pea_gelu": dict(mode="pea", activation="gelu"),
    "pea_mish": dict(mode="pea", activation="mish"),
    "pea_hard_swish": dict(mode="pea", activation="hard_swish"),
    "g_silu": dict(mode="novel", activation="silu"),
    "sched_linear": dict(mode="pea", schedule="linear"),
    "sched_step": dict(mode="pea", schedule="step"),
    "end_0.5": dict(mode="pea", pea_end=0.5),
    "end_0.9": dict(mode="pea", pea_end=0.9),
    "fixed_0.5": dict(mode="fixed", alpha=0.5),
    "learned_alpha": dict(mode="learned"),
    "relu_keras3": dict(mode="relu", keras="3"),
    "pea_silu_keras3": dict(mode="pea", activation="silu", keras="3"),
    "sugar_silu": dict(mode="surrogate", activation="silu"),
    "kd_relu": dict(mode="relu", distill="teacher"),
    "pea_silu_kd": dict(mode="pea", activation="silu", distill="teacher"),
    "pea_silu_selfkd": dict(mode="pea", activation="silu", distill="self"),
}
MAIN = ["relu", "pea_silu", "relu_equal_cost"]
ABLATIONS = ["sched_linear", "sched_step", "end_0.5", "end_0.9", "fixed_0.5", "learned_alpha"]
ACTIVATIONS = ["pea_gelu", "pea_mish", "pea_hard_swish", "g_silu"]
KERAS3 = ["relu_keras3", "pea_silu_keras3"]
METHODS = ["sugar_silu", "kd_relu", "pea_silu_kd", "pea_silu_selfkd"]
ALL_METHODS = ["relu", "relu_equal_cost", "pea_silu", "g_silu"] + METHODS
V2, V3 = "mobilenet_v2", "mobilenet_v3_small"
# Summaries: (name, arch, configs, reference configs for paired differences).
GROUPS = [
    ("mobilenet_v2", V2, ["relu", "pea_silu", "relu_equal_cost"] + ACTIVATIONS,
     ["relu", "relu_equal_cost", "pea_silu"]),
    ("ablations", V2, ["relu", "pea_silu"] + ABLATIONS, ["relu", "pea_silu"]),
    ("mobilenet_v3_small", V3, ["relu", "pea_silu", "relu_equal_cost"] + ACTIVATIONS,
     ["relu", "relu_equal_cost", "pea_silu"]),
    ("keras3", V2, KERAS3, ["relu_keras3"]),
    ("ablations_mobilenet_v3_small", V3, ["relu", "pea_silu"] + ABLATIONS, ["relu", "pea_silu"]),
    ("methods_mobilenet_v3_small", V3, ALL_METHODS, ["relu", "pea_silu"]),
    ("methods_mobilenet_v2", V2, ALL_METHODS, ["relu", "pea_silu"]),
]
SEGMENTATION = "segmentation"


def plan(quick):
    """The jobs in priority order: [(arch, config, seed)], segmentation as (SEGMENTATION, "", n)."""
    if quick:
        return [(V2, c, s) for s in range(2)
                for c in MAIN + ["g_silu", "fixed_0.5", "learned_alpha"]]

    def block(arch, configs, seeds):
        return [(arch, c, s) for s in seeds for c in configs]

    return (block(V2, MAIN, range(10))                      # 1. the headline, 10 seeds
            + block(V2, ABLATIONS, range(5))                 # 2. ablations, 5 seeds first
            + block(V3, ["relu", "pea_silu"], range(5))      # 3. a second compact network
            + block(V2, ACTIVATIONS, range(5))               # 4. other g
            + [(SEGMENTATION, "", 5)]                        # 5. segmentation to 5 seeds
            + block(V3, ["relu", "pea_silu"], range(5, 10))
            + block(V2, ACTIVATIONS, range(5, 10))
            + block(V3, ["relu_equal_cost"], range(10))     # 6. the rest of the configurations on V3
            + block(V3, ACTIVATIONS, range(5))
            + block(V2, ABLATIONS, range(5, 10))             # 7. ablations to 10 seeds
            + block(V3, ACTIVATIONS, range(5, 10))
            + block(V2, KERAS3, range(10))                   # 8. the headline under Keras 3
            + block(V3, ABLATIONS, range(10))                # 9. the defaults backed on V3 too
            + block(V3, METHODS, range(10))                  # 10. the other ways to a better ReLU network
            + block(V2, METHODS, range(10)))


def key(arch, config, seed):
    return f"{arch}/{config}/{seed}"


# ---------------------------------------------------------------------------------------------
# The results file, shared by workers: read-modify-write under an exclusive lock, atomic replace.

EMPTY = {"runs": {}, "equal_cost": {}}


def read_store(path):
    return results_store.read(path, EMPTY)


def update_store(path, change):
    def with_summary(s):
        change(s)
        s["summary"] = {name: summarize(s, name) for name, *_ in GROUPS}

    return results_store.update(path, EMPTY, with_summary)


# ---------------------------------------------------------------------------------------------
# Training one configuration: train.py's chain (pea_keras.training.run), in a scratch folder.

def train_one(arch, config_name, seed, epochs, teachers=None, spec=None):
    """Trains and scores one configuration through `run.run`; returns the result record. A
    configuration distilled from a teacher gets the g_silu model of its seed from `teachers`
    (trained there first if missing) and is charged its training CPU seconds."""
    import tensorflow as tf

    from pea_keras import schedules
    from pea_keras.callbacks import BothFlavoursCallback
    from pea_keras.training import modes, run

    spec = spec or CONFIGS[config_name]
    mode = spec["mode"]
    ablation = {"fixed": lambda: modes.Ablation(schedule=schedules.Constant(spec["alpha"])),
                "learned": lambda: modes.Ablation(trainable_alpha=True)}.get(mode, lambda: None)()
    distill, teacher_cpu_s = spec.get("distill", "none"), None
    if distill == "teacher":
        path, teacher_cpu_s = teacher(teachers, arch, seed, epochs)
        distill = f"teacher:{path}"
    epoch_times = []

    class Clock(BothFlavoursCallback):  # CPU and wall seconds of each epoch.
        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.process_time(), time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            epoch_times.append((time.process_time() - self.start[0], time.perf_counter() - self.start[1]))

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pea-compact-") as tmp:
        config = run.RunConfig(
            arch=arch, width=WIDTHS[arch], mode="pea" if ablation else mode, keras=spec.get("keras", KERAS),
            activation=spec.get("activation", "silu"), schedule=spec.get("schedule", "cosine"),
            pea_end=spec.get("pea_end", 0.75), epochs=epochs, seed=seed, verbose="0", distill=distill,
            output_dir=spec.get("output_dir") or os.path.join(tmp, "run"), tflite_dir=os.path.join(tmp, "tflite"))
        m = run.run(config, callbacks=[Clock()], mode=ablation)
    top1, alphas = m["top1"], m["alpha_trace"]["alpha"]
    return {
        "float": top1["pea"], "stripped": top1.get("stripped"), "int8": top1.get("int8"),
        "int8_bytes": m["sizes"].get("tflite_int8_bytes"), "arch": arch, "width": config.width,
        "keras": config.keras, "config": config_name, "seed": seed, "epochs": epochs, "steps": m["total_steps"],
        "params": m["params"], "alpha_final": m["alpha_final"] if alphas or ablation else None,
        "train_loss_final": m["history"]["loss"][-1], "train_accuracy_final": m["history"]["accuracy"][-1],
        "train_cpu_s": sum(c for c, _ in epoch_times), "train_wall_s": m["wall_time_s"]["train"],
        "teacher_cpu_s": teacher_cpu_s,
        "epoch_cpu_s": [c for c, _ in epoch_times], "epoch_wall_s": [w for _, w in epoch_times],
        "export_wall_s": m["wall_time_s"]["export"], "total_wall_s": time.perf_counter() - t0,
        "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                    tf.config.threading.get_inter_op_parallelism_threads()],
        "finished_utc": now(),
    }


def teacher(teachers, arch, seed, epochs):
    """(path, training CPU seconds) of the g_silu teacher of (arch, seed): trained by the first
    job that needs it (the other worker waits on the lock), kept in `teachers` for the next."""
    folder = os.path.join(teachers, f"{arch}_{seed}_{epochs}")
    record = os.path.join(folder, "teacher.json")
    with locked(folder):
        if not os.path.exists(record):
            shutil.rmtree(folder, ignore_errors=True)
            spec = dict(CONFIGS["g_silu"], output_dir=os.path.join(folder, "run"))
            result = train_one(arch, "g_silu", seed, epochs, spec=spec)
            from pea_keras import files

            files.atomic_write_json(record, result)
        with open(record) as f:
            cpu = json.load(f)["train_cpu_s"]
    return os.path.join(folder, "run", "pea_model.keras"), cpu


def now():
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Equal training cost.

def equal_cost(store, arch, base_epochs, min_pairs):
    """{ratio, epochs, ...} for relu_equal_cost on `arch`, frozen in the store on first use."""
    frozen = store["equal_cost"].get(arch)
    if frozen:
        return frozen
    runs = store["runs"]
    pairs = []
    for s in range(100):
        relu, pea = runs.get(key(arch, "relu", s)), runs.get(key(arch, "pea_silu", s))
        if relu and pea:
            pairs.append({"seed": s, "pea_cpu_s": pea["train_cpu_s"], "relu_cpu_s": relu["train_cpu_s"],
                          "ratio": pea["train_cpu_s"] / relu["train_cpu_s"]})
    if len(pairs) < min_pairs:
        return None
    ratio = statistics.median(p["ratio"] for p in pairs)
    return {"ratio": ratio, "epochs": max(base_epochs, round(base_epochs * ratio)),
            "base_epochs": base_epochs, "pairs": pairs, "frozen_utc": now(),
            "measure": "training CPU seconds (fit), PEA silu / ReLU, median over seeds"}


# ---------------------------------------------------------------------------------------------
# Worker: jobs in priority order, worker I of N taking every N-th one; finished jobs are skipped.

def segmentation_done(args):
    if not os.path.exists(args.segmentation_json):
        return 0
    with open(args.segmentation_json) as f:
        return len(json.load(f).get("seeds", []))


def worker(args):
    index, count = args.worker
    jobs = [j for i, j in enumerate(plan(args.quick)) if i % count == index]
    min_pairs = 1 if args.quick else 2
    while True:
        with locked(args.json):
            store = read_store(args.json)
        pending = [j for j in jobs if (j[0] == SEGMENTATION and segmentation_done(args) < j[2])
                   or (j[0] != SEGMENTATION and key(*j) not in store["runs"]
                       and key(*j) not in store.get("failed", {}))]
        ready = [j for j in pending if j[0] == SEGMENTATION or not CONFIGS[j[1]].get("equal_cost")
                 or equal_cost(store, j[0], args.epochs, min_pairs)]
        if not pending or (args.stop_at and time.time() >= args.stop_at):
            print(f"[{os.getpid()}] {len(pending)} jobs left", flush=True)
            return
        if not ready:  # The equal-cost runs wait for the ratio the other workers are measuring.
            time.sleep(15)
            continue
        arch, config, seed = job = ready[0]
        if arch == SEGMENTATION:
            subprocess.call([sys.executable, os.path.join(REPO, "benchmarks", "segmentation_accuracy.py"),
                             "--seeds", str(seed), "--resume", "--threads", str(args.threads),
                             "--json", args.segmentation_json])
            continue
        epochs = args.epochs
        if CONFIGS[config].get("equal_cost"):
            epochs = update_store(args.json, lambda s, a=arch: s["equal_cost"].setdefault(
                a, equal_cost(s, a, args.epochs, min_pairs)))["equal_cost"][arch]["epochs"]
        try:
            result = train_one(arch, config, seed, epochs, args.teachers)
        except Exception as e:  # noqa: BLE001 (recorded, not retried: the other jobs go on)
            traceback.print_exc()
            update_store(args.json, lambda s, job=job, e=e: s.setdefault("failed", {}).__setitem__(
                key(*job), f"{type(e).__name__}: {str(e).strip()[:300]}"))
            continue
        update_store(args.json, lambda s, job=job, result=result: (
            s["runs"].__setitem__(key(*job), result), s.setdefault("meta", {}).update(meta(args))))
        int8 = "n/a" if result["int8"] is None else f"{100 * result['int8']:.2f}"
        print(f"[{os.getpid()}] {key(*job):32s} {epochs:2d} ep  float {100 * result['float']:.2f}  "
              f"int8 {int8}  cpu {result['train_cpu_s']:.0f} s  wall {result['total_wall_s']:.0f} s", flush=True)


def meta(args):
    import tensorflow as tf
    import tf_keras

    return {"command": "python benchmarks/compact_accuracy.py" + (" --quick" if args.quick else ""),
            "machine": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__,
            "tf_keras": tf_keras.__version__, "keras": KERAS, "epochs": args.epochs, "widths": WIDTHS,
            "configs": CONFIGS, "updated_utc": now(),
            "recipe": "pea_keras.training.run.run (train.py's chain) with the run directory in a scratch folder"}


# ---------------------------------------------------------------------------------------------
# Statistics, tables, plot.

def summarize(store, group):
    name, arch, configs, references = next(g for g in GROUPS if g[0] == group)
    by_config = {}
    for r in store["runs"].values():
        if r["arch"] == arch:
            by_config.setdefault(r["config"], {})[r["seed"]] = r
    return {"arch": arch, "width": WIDTHS[arch], "rows": paired_rows(by_config, configs, MEASURES, references)}


def plot(store, path):
    """Per configuration: stripped and int8 top-1 (mean, 95 % interval) and the paired difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(g, store["summary"][g[0]]) for g in GROUPS]
    heights = [len(g[2]) for g, _ in panels]
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 0.42 * sum(heights) + 2.2),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for i, ((name, _, configs, references), summary) in enumerate(panels):
        ref = references[-1] if name == "ablations" else references[0]
        for j, field in enumerate(("acc", f"vs_{ref}")):
            ax = axes[i][j]
            for k, measure in enumerate(("stripped", "int8")):
                ys, xs, lo, hi = [], [], [], []
                for c, config in enumerate(configs):
                    row = next(r for r in summary["rows"]
                               if r["config"] == config and r["measure"] == measure)
                    stat = (row.get("mean"), row.get("ci95")) if field == "acc" else (
                        (row.get(field) or {}).get("mean"), (row.get(field) or {}).get("ci95"))
                    if stat[0] is None or (config.startswith("g_") and measure == "stripped"):
                        continue  # g-only's forced strip is in the tables; here it would squash the axis.
                    ci = stat[1] or [stat[0], stat[0]]
                    ys.append(c + (k - 0.5) * 0.3)
                    xs.append(100 * stat[0])
                    lo.append(100 * (stat[0] - ci[0]))
                    hi.append(100 * (ci[1] - stat[0]))
                if xs:
                    ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o" if measure == "int8" else "s", ms=4,
                                capsize=3, label=measure)
            ax.set_yticks(range(len(configs)))
            ax.set_yticklabels([f"{c} (n={_n(summary, c)})" for c in configs], fontsize=8)
            ax.invert_yaxis()
            ax.grid(alpha=0.3)
            if field != "acc":
                ax.axvline(0, color="black", lw=0.8)
                ax.set_xlabel(f"paired difference vs {ref}, points (95 % t interval)")
            else:
                ax.set_xlabel("test top-1 % (mean, 95 % t interval)")
            ax.set_title(f"{name} ({summary['arch']} {summary['width']}, 32x32 digits)", fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _n(summary, config):
    return next(r["n"] for r in summary["rows"] if r["config"] == config and r["measure"] == "int8")


def methods_table(store, arch):
    """Per method: stripped and int8 top-1, the fraction of the ReLU -> g_silu gap its stripped ReLU
    network recovers (against g_silu's float, which cannot deploy ReLU-only) and its training CPU
    cost relative to ReLU, a teacher's training included."""
    by = {}
    for r in store["runs"].values():
        if r["arch"] == arch:
            by.setdefault(r["config"], {})[r["seed"]] = r
    seeds = sorted(by.get("relu", {}))
    relu = [by["relu"][s]["stripped"] for s in seeds]
    g = [by.get("g_silu", {}).get(s, {}).get("float") for s in seeds]
    lines = ["| method | n | stripped top-1 % | int8 top-1 % | recovered of the ReLU -> g gap [95 % CI] | "
             "training cost x ReLU |", "|---|---|---|---|---|---|"]
    for config in ALL_METHODS:
        runs = by.get(config, {})
        if config == "g_silu" or not runs:
            continue
        stripped = [runs.get(s, {}).get("stripped") for s in seeds]
        gap = gap_fraction(stripped, relu, g)
        costs = [(runs[s]["train_cpu_s"] + (runs[s].get("teacher_cpu_s") or 0)) / by["relu"][s]["train_cpu_s"]
                 for s in seeds if s in runs]
        mean = {m: 100 * statistics.fmean(r[m] for r in runs.values()) for m in ("stripped", "int8")}
        shown = "-" if gap is None else f"{100 * gap['fraction']:.0f} % [{100 * gap['ci95'][0]:.0f}, " \
                                        f"{100 * gap['ci95'][1]:.0f}]"
        lines.append(f"| {config} | {len(runs)} | {mean['stripped']:.2f} | {mean['int8']:.2f} | {shown} | "
                     f"{statistics.median(costs):.2f} |")
    return "\n".join(lines)


def report(args):
    store = update_store(args.json, lambda store: None)
    texts = []
    for name, _, _, references in GROUPS:
        texts.append(f"### {name}\n\n" + markdown(store["summary"][name], references, MEASURES))
    for arch in (V3, V2):
        texts.append(f"### methods on {arch}: deployed top-1, gap recovered, cost\n\n" + methods_table(store, arch))
    cost = store["equal_cost"]
    if cost:
        texts.append("equal cost: " + json.dumps(
            {a: {k: c[k] for k in ("ratio", "epochs")} for a, c in cost.items()}))
    print("\n\n".join(texts))
    plot(store, args.plot)
    ablation_runs = {k: r for k, r in store["runs"].items()
                     if r["arch"] == V2 and r["config"] in ["relu", "pea_silu"] + ABLATIONS}
    from pea_keras import files

    files.atomic_write_json(args.ablations_json, {
        "source": os.path.relpath(args.json, REPO), "meta": store.get("meta"),
        "summary": store["summary"]["ablations"], "runs": ablation_runs, "markdown": texts[1]})
    print(f"\nwrote {args.json}, {args.ablations_json}, {args.plot}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--report", action="store_true", help="only summarise the JSON: tables, plot")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 2 epochs, 6 configs")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--stop_at", default="", help="UTC time HH:MM after which no new job starts")
    parser.add_argument("--json", default=os.path.join(REPO, "docs", "results", "accuracy_compact.json"))
    parser.add_argument("--ablations_json", default=os.path.join(REPO, "docs", "results", "ablations.json"))
    parser.add_argument("--segmentation_json",
                        default=os.path.join(REPO, "docs", "results", "segmentation.json"))
    parser.add_argument("--plot", default=os.path.join(REPO, "docs", "accuracy_compact.png"))
    parser.add_argument("--teachers", default=os.path.join(REPO, "runs", "compact_teachers"),
                        help="where the g_silu teachers of the distilled configurations are kept")
    parser.add_argument("--worker", default="0/1", type=lambda t: tuple(map(int, t.split("/"))), metavar="I/N",
                        help="this worker's share of the jobs: every N-th from the I-th (start 0/2 and 1/2 "
                             "on 2 cores)")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 2
        for name in ("json", "ablations_json", "plot"):
            root, ext = os.path.splitext(getattr(args, name))
            setattr(args, name, f"{root}_quick{ext}")
    if args.stop_at:
        hour, minute = map(int, args.stop_at.split(":"))
        today = datetime.datetime.now(datetime.UTC)
        args.stop_at = today.replace(hour=hour, minute=minute, second=0, microsecond=0).timestamp()
    if args.report:
        report(args)
        return
    warnings.filterwarnings("ignore")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    worker(args)
    if args.quick:
        report(args)


if __name__ == "__main__":
    main()
