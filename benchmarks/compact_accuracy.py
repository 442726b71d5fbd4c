"""Does PEA help compact networks? MobileNets at 32x32 on digits, paired by seed, with ablations.

Every run uses the product recipe of `python train.py --arch mobilenet_v2 --width 0.35 --keras 2` (the same
`pea_keras.training` builders: data split and pipeline, model, BatchNorm momentum 0.9, Adam 2e-3 with
cosine decay to 0, batch 64, 15 epochs, one pass per epoch, seeding). The seed sets the data split,
the batch order and the initial weights; every configuration of a seed starts from the same weights
and sees the same batches, so differences are paired. Configurations:

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
g_silu, fixed_0.5 and learned_alpha) and int8 (pea_keras.tflite.quantize of the stripped network,
256 training images calibrate it; g_silu: of the g network) on LiteRT.

The benchmark is resumable: each finished (arch, config, seed) is written to the JSON at once and
skipped on restart, and several workers may share one JSON (each claims a job before running it).
Jobs run in priority order and seeds round-robin inside a priority, so every configuration of a
block has comparable seeds whenever it is stopped.

    python benchmarks/compact_accuracy.py --threads 1 &      # a worker (start two on 2 cores)
    python benchmarks/compact_accuracy.py --threads 1 &
    python benchmarks/compact_accuracy.py --report           # tables, plot, ablations.json
    python benchmarks/compact_accuracy.py --quick            # smoke: 2 seeds, 2 epochs
"""
import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

from paired_stats import mean_interval, paired

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
}
MAIN = ["relu", "pea_silu", "relu_equal_cost"]
ABLATIONS = ["sched_linear", "sched_step", "end_0.5", "end_0.9", "fixed_0.5", "learned_alpha"]
ACTIVATIONS = ["pea_gelu", "pea_mish", "pea_hard_swish", "g_silu"]
KERAS3 = ["relu_keras3", "pea_silu_keras3"]
V2, V3 = "mobilenet_v2", "mobilenet_v3_small"
# Summaries: (name, arch, configs, reference configs for paired differences).
GROUPS = [
    ("mobilenet_v2", V2, ["relu", "pea_silu", "relu_equal_cost"] + ACTIVATIONS,
     ["relu", "relu_equal_cost", "pea_silu"]),
    ("ablations", V2, ["relu", "pea_silu"] + ABLATIONS, ["relu", "pea_silu"]),
    ("mobilenet_v3_small", V3, ["relu", "pea_silu", "relu_equal_cost"] + ACTIVATIONS,
     ["relu", "relu_equal_cost", "pea_silu"]),
    ("keras3", V2, KERAS3, ["relu_keras3"]),
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
            + block(V2, KERAS3, range(10)))                  # 8. the headline under Keras 3


def key(arch, config, seed):
    return f"{arch}/{config}/{seed}"


# ---------------------------------------------------------------------------------------------
# The results file, shared by workers: read-modify-write under an exclusive lock, atomic replace.

def _scratch(path, what):
    """A per-results-file path in the temporary folder (locks and claims stay out of the repo)."""
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    return os.path.join(tempfile.gettempdir(), f"pea-compact-{what}-{digest}")


@contextlib.contextmanager
def locked(path):
    with open(_scratch(path, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_store(path):
    if not os.path.exists(path):
        return {"runs": {}, "equal_cost": {}}
    with open(path) as f:
        return json.load(f)


def write_store(path, store):
    store["summary"] = {name: summarize(store, name) for name, *_ in GROUPS}
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(store, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def update_store(path, change):
    with locked(path):
        store = read_store(path)
        change(store)
        write_store(path, store)
        return store


# ---------------------------------------------------------------------------------------------
# Training one configuration with the product's builders.

def _trainable_alpha(K, model):
    """`model` rebuilt with every PEALayer's alpha a trainable weight, same weights otherwise."""
    from pea_keras.layer import is_pea_layer

    def clone(layer):
        config = layer.get_config()
        if is_pea_layer(layer):
            config["trainable_alpha"] = True
        return layer.__class__.from_config(config)

    new = K.models.clone_model(model, clone_function=clone)
    for layer in new.layers:
        source = model.get_layer(layer.name)
        if source.weights:
            layer.set_weights(source.get_weights())
    return new


def _g_network(model, g_name):
    """The forced-stripped `model` with g in place of every ReLU (g-only's deployment)."""
    import pea_keras

    return pea_keras.replace_relu(pea_keras.strip(model, force=True), g_name)


class _Clock:
    """CPU and wall seconds of fit(), and of each epoch."""

    def __init__(self, K):
        clock = self

        class Callback(K.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock._epoch = (time.process_time(), time.perf_counter())

            def on_epoch_end(self, epoch, logs=None):
                cpu, wall = clock._epoch
                clock.epochs.append((time.process_time() - cpu, time.perf_counter() - wall))

        self.epochs = []
        self.callback = Callback()


def train_one(arch, config_name, seed, epochs):
    """Trains and scores one configuration; returns the result record."""
    import tensorflow as tf

    import pea_keras
    from pea_keras import schedules, tflite
    from pea_keras.training import config as config_lib
    from pea_keras.training import run, tasks

    spec = CONFIGS[config_name]
    mode = spec["mode"]
    modes = config_lib.FIELDS["mode"].metadata["choices"]
    rc = config_lib.RunConfig(
        arch=arch, width=WIDTHS[arch], mode=mode if mode in modes else "pea",
        keras=spec.get("keras", KERAS),
        activation=spec.get("activation", "silu"), schedule=spec.get("schedule", "cosine"),
        pea_end=spec.get("pea_end", 0.75), epochs=epochs, seed=seed, verbose="0")
    config_lib.validate(rc)
    rc = tasks.with_defaults(rc)
    K = config_lib.flavour(rc.keras)
    task = tasks.get(rc.task)
    t0 = time.perf_counter()
    # As run.run: the seed before the pipelines (shuffle order) and again before the model.
    K.utils.set_random_seed(rc.seed)
    data = task.load_data(rc)
    train_ds, _, test_ds = task.datasets(data, rc)
    steps = data.sizes["train"] // rc.batch_size
    total = rc.epochs * steps
    K.utils.set_random_seed(rc.seed)
    model = task.build_model(K, rc, data)
    callbacks = []
    if mode != "relu":
        model = pea_keras.wrap(model, activation=rc.activation, alpha=0.0)
        if mode == "learned":
            model = _trainable_alpha(K, model)
        else:
            schedule = {"pea": lambda: run.make_schedule(rc, total),
                        "novel": lambda: schedules.Constant(0.0),
                        "fixed": lambda: schedules.Constant(spec["alpha"])}[mode]()
            callbacks.append(pea_keras.PEAScheduler(schedule))
    optimizer, _ = run.make_optimizer(K, rc, total, steps)
    model.compile(optimizer=optimizer, loss=task.loss(K, rc), metrics=task.metrics(K))
    clock = _Clock(K)
    cpu, wall = time.process_time(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # g-only, fixed and learned alpha end below 1 by design.
        history = model.fit(train_ds, epochs=rc.epochs, steps_per_epoch=steps, verbose=0, shuffle=False,
                            callbacks=callbacks + [clock.callback])
    train_cpu, train_wall = time.process_time() - cpu, time.perf_counter() - wall

    layers = pea_keras.pea_layers(model)
    alphas = [float(layer.alpha.numpy()) for layer in layers]
    result = {"float": task.evaluate(model, test_ds).score}
    stripped = pea_keras.strip(model, force=mode in ("novel", "fixed", "learned")) if layers else model
    result["stripped"] = task.evaluate(stripped, test_ds).score
    deploy = _g_network(model, rc.activation) if mode == "novel" else stripped
    t_export = time.perf_counter()
    calibration = task.calibration(data, rc, 256)
    with tempfile.TemporaryDirectory(prefix="pea-compact-") as tmp:
        path = os.path.join(tmp, "model_int8.tflite")
        try:
            with open(path, "wb") as f:
                f.write(tflite.quantize(deploy, calibration))
            result["int8"] = task.evaluate_tflite(path, test_ds).score
            result["int8_bytes"] = os.path.getsize(path)
            result["relu_only"] = not tflite.relu_only_violations(path, int8=True)
        except Exception as e:  # noqa: BLE001 (a g without int8 kernels is a result, not a crash)
            result["int8"] = None
            result["int8_error"] = str(e).strip().splitlines()[0][:200]
    result.update({
        "arch": arch, "width": rc.width, "keras": rc.keras, "config": config_name, "seed": seed, "epochs": rc.epochs,
        "steps": total, "params": int(model.count_params()),
        "alpha_final": (min(alphas), max(alphas)) if alphas else None,
        "train_loss_final": float(history.history["loss"][-1]),
        "train_accuracy_final": float(history.history["accuracy"][-1]),
        "train_cpu_s": train_cpu, "train_wall_s": train_wall,
        "epoch_cpu_s": [c for c, _ in clock.epochs], "epoch_wall_s": [w for _, w in clock.epochs],
        "export_wall_s": time.perf_counter() - t_export, "total_wall_s": time.perf_counter() - t0,
        "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                    tf.config.threading.get_inter_op_parallelism_threads()],
        "finished_utc": now(),
    })
    K.backend.clear_session()
    return result


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
# Worker: claim the first unfinished job, run it, record it, repeat.

def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(claims, job):
    """True if this process now owns `job` (a claim file with its pid; dead owners' claims lapse)."""
    path = os.path.join(claims, "__".join(map(str, job)).replace("/", "_"))
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                return False
            if pid and _alive(pid):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def release(claims, job):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(claims, "__".join(map(str, job)).replace("/", "_")))


def segmentation_done(args):
    if not os.path.exists(args.segmentation_json):
        return 0
    with open(args.segmentation_json) as f:
        return len(json.load(f).get("seeds", []))


def run_segmentation(args, seeds):
    command = [sys.executable, os.path.join(REPO, "benchmarks", "segmentation_accuracy.py"),
               "--seeds", str(seeds), "--resume", "--threads", str(args.threads),
               "--json", args.segmentation_json]
    print(f"[{os.getpid()}] {' '.join(command[1:])}", flush=True)
    return subprocess.call(command)


def worker(args):
    jobs = plan(args.quick)
    os.makedirs(args.claims, exist_ok=True)
    base_epochs = args.epochs
    while True:
        with locked(args.json):
            store = read_store(args.json)
        pending = [j for j in jobs if (j[0] == SEGMENTATION and segmentation_done(args) < j[2])
                   or (j[0] != SEGMENTATION and key(*j) not in store["runs"]
                       and key(*j) not in store.get("failed", {}))]
        if not pending:
            print(f"[{os.getpid()}] every job is done", flush=True)
            return
        if args.stop_at and time.time() >= args.stop_at:
            print(f"[{os.getpid()}] stop time reached; {len(pending)} jobs left", flush=True)
            return
        job = None
        for candidate in pending:
            arch, config, seed = candidate
            if arch != SEGMENTATION and CONFIGS[config].get("equal_cost") and not equal_cost(
                    store, arch, base_epochs, 1 if args.quick else 2):
                continue  # Needs the measured ratio first.
            if claim(args.claims, candidate):
                job = candidate
                break
        if job is None:
            time.sleep(15)
            continue
        try:
            arch, config, seed = job
            if arch == SEGMENTATION:
                run_segmentation(args, seed)
                continue
            epochs = base_epochs
            if CONFIGS[config].get("equal_cost"):
                cost = update_store(args.json, lambda s, a=arch: s["equal_cost"].setdefault(
                    a, equal_cost(s, a, base_epochs, 1 if args.quick else 2)))["equal_cost"][arch]
                epochs = cost["epochs"]
            try:
                result = train_one(arch, config, seed, epochs)
            except Exception as e:  # noqa: BLE001 (recorded, not retried: the other jobs go on)
                traceback.print_exc()
                update_store(args.json, lambda s, job=job, e=e: s.setdefault("failed", {}).__setitem__(
                    key(*job), f"{type(e).__name__}: {str(e).strip()[:300]}"))
                continue

            def record(s, job=job, result=result):
                s["runs"][key(*job)] = result
                s.setdefault("meta", {}).update(meta(args))
            update_store(args.json, record)
            int8 = "n/a" if result["int8"] is None else f"{100 * result['int8']:.2f}"
            print(f"[{os.getpid()}] {key(*job):32s} {epochs:2d} ep  float {100 * result['float']:.2f}  "
                  f"stripped {100 * result['stripped']:.2f}  int8 {int8}  cpu {result['train_cpu_s']:.0f} s"
                  f"  wall {result['total_wall_s']:.0f} s", flush=True)
        finally:
            release(args.claims, job)


def meta(args):
    import tensorflow as tf
    import tf_keras

    return {"command": "python benchmarks/compact_accuracy.py" + (" --quick" if args.quick else ""),
            "machine": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__,
            "tf_keras": tf_keras.__version__, "keras": KERAS, "epochs": args.epochs, "widths": WIDTHS,
            "configs": CONFIGS, "updated_utc": now()}


# ---------------------------------------------------------------------------------------------
# Statistics, tables, plot.

def summarize(store, group):
    name, arch, configs, references = next(g for g in GROUPS if g[0] == group)
    runs = store["runs"]
    seeds = sorted({r["seed"] for r in runs.values() if r["arch"] == arch})
    rows = []
    for config in configs:
        for measure in MEASURES:
            values = {s: runs[key(arch, config, s)].get(measure) for s in seeds
                      if key(arch, config, s) in runs}
            vals = [v for v in values.values() if v is not None]
            row = {"config": config, "measure": measure, "n": len(vals),
                   "seeds": sorted(s for s, v in values.items() if v is not None)}
            if vals:
                row.update(mean_interval(vals))
            for ref in references:
                if config in references and references.index(config) <= references.index(ref):
                    continue  # A reference is compared only with the references before it.
                common = [s for s in row["seeds"] if key(arch, ref, s) in runs]
                row[f"vs_{ref}"] = paired([runs[key(arch, config, s)][measure] for s in common],
                                          [runs[key(arch, ref, s)][measure] for s in common])
            rows.append(row)
    return {"arch": arch, "width": WIDTHS[arch], "rows": rows}


def _pt(x):
    return f"{100 * x:+.2f}"


def markdown(summary, references, measures=MEASURES):
    head = "| config | measure | n | top-1 % mean | std |"
    rule = "|---|---|---|---|---|"
    for ref in references:
        head += f" vs {ref}: mean pt [95 % CI] | W/T/L |"
        rule += "---|---|"
    lines = [head, rule]
    for r in summary["rows"]:
        if r["measure"] not in measures:
            continue
        if not r["n"]:
            lines.append(f"| {r['config']} | {r['measure']} | 0 | - | - |" + " - | - |" * len(references))
            continue
        line = f"| {r['config']} | {r['measure']} | {r['n']} | {100 * r['mean']:.2f} | {100 * r['std']:.2f} |"
        for ref in references:
            d = r.get(f"vs_{ref}")
            if not d:
                line += " - | - |"
                continue
            ci = f" [{_pt(d['ci95'][0])}, {_pt(d['ci95'][1])}]" if d["ci95"] else ""
            line += f" {_pt(d['mean'])}{ci} | {d['wins']}/{d['ties']}/{d['losses']} |"
        lines.append(line)
    return "\n".join(lines)


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


def report(args):
    with locked(args.json):
        store = read_store(args.json)
        write_store(args.json, store)
    texts = []
    for name, _, _, references in GROUPS:
        texts.append(f"### {name}\n\n" + markdown(store["summary"][name], references))
    cost = store["equal_cost"]
    if cost:
        texts.append("equal cost: " + json.dumps(
            {a: {k: c[k] for k in ("ratio", "epochs")} for a, c in cost.items()}))
    print("\n\n".join(texts))
    plot(store, args.plot)
    ablation_runs = {k: r for k, r in store["runs"].items()
                     if r["arch"] == V2 and r["config"] in ["relu", "pea_silu"] + ABLATIONS}
    with open(args.ablations_json, "w") as f:
        json.dump({"source": os.path.relpath(args.json, REPO), "meta": store.get("meta"),
                   "summary": store["summary"]["ablations"], "runs": ablation_runs,
                   "markdown": texts[1]}, f, indent=1)
        f.write("\n")
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
    parser.add_argument("--claims", default="")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 2
        for name in ("json", "ablations_json", "plot"):
            root, ext = os.path.splitext(getattr(args, name))
            setattr(args, name, f"{root}_quick{ext}")
    args.claims = args.claims or _scratch(args.json, "claims")
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
