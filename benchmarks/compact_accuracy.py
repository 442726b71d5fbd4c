"""Does PEA help compact networks? MobileNets at 32x32 on digits, paired by seed, with ablations.

Every run is `python train.py --arch ARCH --width W --keras 2` with the configuration's settings: it trains through
`pea_keras.training.run.run`, the chain train.py runs (data split and pipeline, model, wrap, BatchNorm momentum 0.9,
Adam 2e-3 with cosine decay to 0, batch 64, 15 epochs, one pass per epoch, seeding, strip, int8 export and scoring),
with its run directory in a scratch folder; ablations are `modes.Ablation` modes. The seed sets the data split, the
batch order and the initial weights; every configuration of a seed starts from the same weights and sees the same
batches, so differences are paired. Configurations:

  relu             the plain ReLU network
  pea_<g>          PEA with g (silu, gelu, mish, hard_swish): cosine schedule, alpha 0 -> 1 over the first 75 % of
                   steps (the defaults), then pea_keras.strip
  g_silu           g everywhere (alpha = 0; an upper bound that cannot be deployed ReLU-only)
  relu_equal_cost  ReLU trained for round(15 * r) epochs, r = the PEA/ReLU ratio of training CPU seconds measured on
                   the relu and pea_silu runs of this benchmark (median over seeds, frozen once two pairs exist), so
                   it costs what PEA costs
  sched_linear, sched_step     PEA silu with another schedule shape
  end_0.5, end_0.9             PEA silu with alpha reaching 1 at 50 % / 90 % of training
  fixed_0.5        alpha held at 0.5 throughout, then stripped by force (no progression)
  learned_alpha    alpha a trainable weight of each PEALayer (from 0, clipped to [0, 1]), then stripped by force
  relu_keras3, pea_silu_keras3   relu and pea_silu under Keras 3 (train.py's default flavor) instead of tf_keras;
                   paired with each other, not with the tf_keras runs
  sugar_silu, kd_relu, pea_silu_kd, pea_silu_selfkd   other ways to a better ReLU network: surrogate gradients,
                   distillation from the g_silu network, PEA with that teacher, PEA distilled from its own g branch
  pea_hybrid_silu  recipe candidate: --relu_gradient g (the blend's ReLU branch backpropagates g', so PEA turns
                   into SUGAR at alpha 1); pea_silu_bn: --bn_reestimate 50 (the stripped network's batch-norm
                   statistics recomputed on 50 training batches); pea_hybrid_silu_bn: both

The recipe study (--study recipes, its own JSON) trains relu, g_silu, pea_silu, sugar_silu and the three candidates
with today's code, seeds round-robin, MobileNetV3-Small first. The rule, fixed before any result: on each network
the recipe is the one among pea_silu and the candidates with the highest mean validation top-1 of its deployed
(stripped) network over the seeds all of them have; a candidate becomes train.py's default only if it is the
choice on both networks. The test split then reports it against pea_silu and sugar_silu.

Each trained model is scored once, after the last epoch, on the test split (nothing is selected on it): float (the
trained Keras model), stripped (the ReLU network: pea_keras.strip, by force for fixed_0.5 and learned_alpha) and int8
(train.py's int8 file of the stripped network, 256 training images calibrate it) on LiteRT; g_silu, which cannot
deploy ReLU-only, has float only.

The benchmark is resumable: each finished (arch, config, seed) is written to the JSON at once and skipped on restart;
workers share one JSON, each taking every N-th job of the plan. Jobs run in priority order and seeds round-robin
inside a priority, so every configuration of a block has comparable seeds whenever it is stopped.

    python benchmarks/compact_accuracy.py --threads 1 --worker 0/2 &
    python benchmarks/compact_accuracy.py --threads 1 --worker 1/2 &
    python benchmarks/compact_accuracy.py --report           # tables, plot, ablations.json
    python benchmarks/compact_accuracy.py --quick            # smoke: 2 seeds, 2 epochs
    python benchmarks/compact_accuracy.py --study recipes --threads 1 --worker 0/1 &   # then --study recipes --report
"""
import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import common
import results_store
from common import REPO, RESULTS, now
from paired_stats import choice_text, forest, gap_fraction, gap_text, markdown, paired_rows
from results_store import locked

from pea_keras import files

MEASURES = ("float", "stripped", "int8")
VALIDATED = MEASURES + ("validation",)  # The deployed network's validation top-1, recorded since the recipe study.
EPOCHS = 15
KERAS = "2"  # tf_keras: the flavor every recorded run used (train.py's default was then "2").
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
    "pea_hybrid_silu": dict(mode="pea", activation="silu", relu_gradient="g"),
    "pea_silu_bn": dict(mode="pea", activation="silu", bn_reestimate=50),
    "pea_hybrid_silu_bn": dict(mode="pea", activation="silu", relu_gradient="g", bn_reestimate=50),
}
MAIN = ["relu", "pea_silu", "relu_equal_cost"]
ABLATIONS = ["sched_linear", "sched_step", "end_0.5", "end_0.9", "fixed_0.5", "learned_alpha"]
ACTIVATIONS = ["pea_gelu", "pea_mish", "pea_hard_swish", "g_silu"]
KERAS3 = ["relu_keras3", "pea_silu_keras3"]
METHODS = ["sugar_silu", "kd_relu", "pea_silu_kd", "pea_silu_selfkd"]
RECIPES = ["pea_hybrid_silu", "pea_silu_bn", "pea_hybrid_silu_bn"]  # Chosen among on validation.
RECIPE_STUDY = ["relu", "g_silu", "pea_silu", "sugar_silu"] + RECIPES
ALL_METHODS = ["relu", "relu_equal_cost", "pea_silu", "g_silu"] + METHODS + RECIPES
V2, V3 = "mobilenet_v2", "mobilenet_v3_small"
# Summaries: (name, arch, configs, reference configs for paired differences).
GROUPS = [
    ("mobilenet_v2", V2, MAIN + ACTIVATIONS, ["relu", "relu_equal_cost", "pea_silu"]),
    ("ablations", V2, ["relu", "pea_silu"] + ABLATIONS, ["relu", "pea_silu"]),
    ("mobilenet_v3_small", V3, MAIN + ACTIVATIONS, ["relu", "relu_equal_cost", "pea_silu"]),
    ("keras3", V2, KERAS3, ["relu_keras3"]),
    ("ablations_mobilenet_v3_small", V3, ["relu", "pea_silu"] + ABLATIONS, ["relu", "pea_silu"]),
    ("methods_mobilenet_v3_small", V3, ALL_METHODS, ["relu", "pea_silu", "sugar_silu"]),
    ("methods_mobilenet_v2", V2, ALL_METHODS, ["relu", "pea_silu", "sugar_silu"]),
]


def plan(quick):
    """The jobs in priority order: [(arch, config, seed)]."""
    if quick:
        return [(V2, c, s) for s in range(2) for c in MAIN + ["g_silu", "fixed_0.5", "learned_alpha"]]

    def block(arch, configs, seeds):
        return [(arch, c, s) for s in seeds for c in configs]

    return (block(V2, MAIN, range(10))                      # 1. the headline, 10 seeds
            + block(V2, ABLATIONS, range(5))                 # 2. ablations, 5 seeds first
            + block(V3, ["relu", "pea_silu"], range(5))      # 3. a second compact network
            + block(V2, ACTIVATIONS, range(5))               # 4. other g
            + block(V3, ["relu", "pea_silu"], range(5, 10))  # 5. (segmentation_accuracy.py to 5 seeds)
            + block(V2, ACTIVATIONS, range(5, 10))
            + block(V3, ["relu_equal_cost"], range(10))     # 6. the rest of the configurations on V3
            + block(V3, ACTIVATIONS, range(5))
            + block(V2, ABLATIONS, range(5, 10))             # 7. ablations to 10 seeds
            + block(V3, ACTIVATIONS, range(5, 10))
            + block(V2, KERAS3, range(10))                   # 8. the headline under Keras 3
            + block(V3, ABLATIONS, range(10))                # 9. the defaults backed on V3 too
            + block(V3, METHODS, range(10))                  # 10. the other ways to a better ReLU network
            + block(V2, METHODS, range(10)))


def recipes_plan():
    """The recipe study (--study recipes, its own JSON): the candidates and the configurations they are chosen
    against, all trained by today's code, V3 (the network furthest from the goal) first."""
    return [(arch, c, s) for arch in (V3, V2) for s in range(10) for c in RECIPE_STUDY]


def key(arch, config, seed):
    return f"{arch}/{config}/{seed}"


EMPTY = {"runs": {}, "equal_cost": {}}


def update_store(path, change):
    def with_summary(s):
        change(s)
        s["summary"] = {name: summarize(s, name) for name, *_ in GROUPS}

    return results_store.update(path, EMPTY, with_summary)


def train_one(arch, config_name, seed, epochs, teachers=None, spec=None):
    """Trains and scores one configuration through `run.run`; returns the result record. A configuration distilled
    from a teacher gets the g_silu model of its seed from `teachers` (trained there first if missing) and is charged
    its training CPU seconds."""
    import tensorflow as tf

    from pea_keras import schedules
    from pea_keras.callbacks import BothFlavorsCallback
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

    class Clock(BothFlavorsCallback):  # CPU and wall seconds of each epoch.
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
            relu_gradient=spec.get("relu_gradient", "relu"), bn_reestimate=spec.get("bn_reestimate", 0),
            output_dir=spec.get("output_dir") or os.path.join(tmp, "run"), tflite_dir=os.path.join(tmp, "tflite"))
        m = run.run(config, callbacks=[Clock()], mode=ablation)
    top1, alphas = m["top1"], m["alpha_trace"]["alpha"]
    return {
        "float": top1["pea"], "stripped": top1.get("stripped"), "int8": top1.get("int8"),
        "validation": top1.get("validation"),
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
            files.atomic_write_json(record, train_one(arch, "g_silu", seed, epochs, spec=spec))
        cpu = results_store.read(record, {})["train_cpu_s"]
    return os.path.join(folder, "run", "pea_model.keras"), cpu


def equal_cost(store, arch, base_epochs, min_pairs):
    """{ratio, epochs, ...} for relu_equal_cost on `arch`, frozen in the store on first use."""
    frozen = store["equal_cost"].get(arch)
    if frozen:
        return frozen
    pairs = []
    for s in range(100):
        relu, pea = (store["runs"].get(key(arch, config, s)) for config in ("relu", "pea_silu"))
        if relu and pea:
            pairs.append({"seed": s, "pea_cpu_s": pea["train_cpu_s"], "relu_cpu_s": relu["train_cpu_s"],
                          "ratio": pea["train_cpu_s"] / relu["train_cpu_s"]})
    if len(pairs) < min_pairs:
        return None
    ratio = statistics.median(p["ratio"] for p in pairs)
    return {"ratio": ratio, "epochs": max(base_epochs, round(base_epochs * ratio)),
            "base_epochs": base_epochs, "pairs": pairs, "frozen_utc": now(),
            "measure": "training CPU seconds (fit), PEA silu / ReLU, median over seeds"}


def worker(args):
    min_pairs = 1 if args.quick else 2

    def ready(store, job):  # The equal-cost runs wait for the ratio the other workers are measuring.
        return not CONFIGS[job[1]].get("equal_cost") or equal_cost(store, job[0], args.epochs, min_pairs)

    def run(job):
        (arch, config, seed), epochs = job, args.epochs
        if CONFIGS[config].get("equal_cost"):
            epochs = update_store(args.json, lambda s: s["equal_cost"].setdefault(
                arch, equal_cost(s, arch, args.epochs, min_pairs)))["equal_cost"][arch]["epochs"]
        result = train_one(arch, config, seed, epochs, args.teachers)
        int8 = "n/a" if result["int8"] is None else f"{100 * result['int8']:.2f}"
        print(f"[{os.getpid()}] {key(*job):32s} {epochs:2d} ep  float {100 * result['float']:.2f}  "
              f"int8 {int8}  cpu {result['train_cpu_s']:.0f} s  wall {result['total_wall_s']:.0f} s", flush=True)
        return result

    jobs = recipes_plan() if args.study == "recipes" else plan(args.quick)
    jobs = jobs[args.worker[0]::args.worker[1]]  # Every N-th from the I-th.
    results_store.work(args.json, EMPTY, jobs, lambda job: key(*job), run, ready, args.stop_at, update_store,
                       recorded=lambda s: s.setdefault("meta", {}).update(meta(args)))


def meta(args):
    import tf_keras

    return {"command": "python benchmarks/compact_accuracy.py" + (" --quick" if args.quick else "")
            + (" --study recipes" if args.study == "recipes" else ""),
            **common.machine(), "tf_keras": tf_keras.__version__, "keras": KERAS, "epochs": args.epochs,
            "widths": WIDTHS, "configs": CONFIGS, "updated_utc": now(),
            "recipe": "pea_keras.training.run.run (train.py's chain) with the run directory in a scratch folder"}


def by_config(store, arch):
    """{config: {seed: record}} of `arch`."""
    found = {}
    for r in store["runs"].values():
        if r["arch"] == arch:
            found.setdefault(r["config"], {})[r["seed"]] = r
    return found


def summarize(store, group):
    _, arch, configs, references = next(g for g in GROUPS if g[0] == group)
    rows = paired_rows(by_config(store, arch), configs, MEASURES, references)
    return {"arch": arch, "width": WIDTHS[arch], "rows": rows}


def plot(store, path):
    """Per configuration: stripped and int8 top-1 (mean, 95 % interval) and the paired difference."""
    panels = []
    for name, _, configs, references in GROUPS:
        summary = store["summary"][name]
        panels.append((f"{name} ({summary['arch']} {summary['width']}, 32x32 digits)", summary, configs,
                       references[-1] if name == "ablations" else references[0]))
    # g-only's forced strip is in the tables; in the plot it would squash the axis.
    forest(panels, path, skip=lambda config, measure: config.startswith("g_") and measure == "stripped")


def methods_table(store, arch):
    """Per method: stripped and int8 top-1, the fraction of the ReLU -> g_silu gap its stripped and int8 ReLU
    networks recover (against g_silu's float, which cannot deploy ReLU-only; from ReLU's stripped and int8), the
    deployed network's validation top-1 where recorded (recipes are chosen on it) and its training CPU cost
    relative to ReLU, a teacher's training included."""
    by = by_config(store, arch)
    seeds = sorted(by.get("relu", {}))
    g = [by.get("g_silu", {}).get(s, {}).get("float") for s in seeds]
    lines = ["| method | n | stripped top-1 % | int8 top-1 % | recovered of the ReLU -> g gap, stripped [95 % CI] | "
             "int8 [95 % CI] | validation top-1 % | training cost x ReLU |", "|---|---|---|---|---|---|---|---|"]
    for config in ALL_METHODS:
        runs = by.get(config, {})
        if config == "g_silu" or not runs:
            continue
        gaps = [gap_text(gap_fraction([runs.get(s, {}).get(m) for s in seeds], [by["relu"][s][m] for s in seeds], g))
                for m in ("stripped", "int8")]
        costs = [(runs[s]["train_cpu_s"] + (runs[s].get("teacher_cpu_s") or 0)) / by["relu"][s]["train_cpu_s"]
                 for s in seeds if s in runs]
        mean = {m: 100 * statistics.fmean(r[m] for r in runs.values()) for m in ("stripped", "int8")}
        val = [r["validation"] for r in runs.values() if r.get("validation") is not None]
        lines.append(f"| {config} | {len(runs)} | {mean['stripped']:.2f} | {mean['int8']:.2f} | {' | '.join(gaps)} | "
                     + (f"{100 * statistics.fmean(val):.2f} ({len(val)})" if val else "-")
                     + f" | {statistics.median(costs):.2f} |")
    return "\n".join(lines)


def report(args):
    store = update_store(args.json, lambda store: None)
    if args.study == "recipes":
        references, texts = ["pea_silu", "sugar_silu"], []
        for arch in (V3, V2):
            runs = by_config(store, arch)
            rows = [r for r in paired_rows(runs, RECIPE_STUDY, VALIDATED, references) if r["n"]]
            if rows:
                validation = {c: {s: r["validation"] for s, r in runs.get(c, {}).items()}
                              for c in ["pea_silu"] + RECIPES}
                texts.append(f"### {arch}\n\n{choice_text(validation)}\n\n{methods_table(store, arch)}\n\n"
                             + markdown({"rows": rows}, references, VALIDATED))
        print("\n\n".join(texts))
        return
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
    files.atomic_write_json(args.ablations_json, {
        "source": os.path.relpath(args.json, REPO), "meta": store.get("meta"),
        "summary": store["summary"]["ablations"], "runs": ablation_runs, "markdown": texts[1]})
    print(f"\nwrote {args.json}, {args.ablations_json}, {args.plot}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_threads_argument(parser)
    parser.add_argument("--report", action="store_true", help="only summarise the JSON: tables, plot")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 2 epochs, 6 configs")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--study", choices=("main", "recipes"), default="main",
                        help="recipes: the recipe candidates and what they are chosen against, in their own JSON")
    parser.add_argument("--json", help="the results (default: docs/results/accuracy_compact.json, or "
                                       "compact_recipes.json for --study recipes)")
    parser.add_argument("--ablations_json", default=os.path.join(RESULTS, "ablations.json"))
    parser.add_argument("--plot", default=os.path.join(REPO, "docs", "accuracy_compact.png"))
    parser.add_argument("--teachers", default=os.path.join(REPO, "runs", "compact_teachers"),
                        help="where the g_silu teachers of the distilled configurations are kept")
    common.add_worker_arguments(parser)
    args = parser.parse_args()
    args.json = args.json or os.path.join(RESULTS, "compact_recipes.json" if args.study == "recipes"
                                          else "accuracy_compact.json")
    if args.quick:
        args.epochs = 2
        common.quick_paths(args, "json", "ablations_json", "plot")
    if args.report:
        report(args)
        return
    common.quiet_tensorflow(args.threads)
    worker(args)
    if args.quick:
        report(args)


if __name__ == "__main__":
    main()
