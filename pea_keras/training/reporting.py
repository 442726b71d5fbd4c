"""What a training run leaves behind: metrics.json, the alpha trace, plots and a summary table.

Nothing here trains or imports Keras; every function takes plain Python values so the same
reports serve any task (the metric name is an argument).
"""

import csv
import json
import math
import os

from pea_keras import files
from pea_keras.tflite import devices, micro_kit

ALPHA_TRACE = "alpha_trace.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
ALPHA_PLOT = "alpha.png"
CURVES_PLOT = "curves.png"
# Traces of long runs (ImageNet: hundreds of thousands of steps) are thinned to about this many points.
MAX_TRACE_POINTS = 5000


def trace_stride(total_steps):
    """Record alpha every this many steps so a trace has at most ~MAX_TRACE_POINTS points."""
    return max(1, math.ceil(total_steps / MAX_TRACE_POINTS))


def save_alpha_trace(run_dir, steps, alphas):
    files.atomic_write_json(os.path.join(run_dir, ALPHA_TRACE),
                            {"step": [int(s) for s in steps], "alpha": [float(a) for a in alphas]},
                            indent=None)


def load_alpha_trace(run_dir, before_step=None):
    """(steps, alphas) saved by an earlier part of the run, cut at `before_step` when given."""
    path = os.path.join(run_dir, ALPHA_TRACE)
    if not os.path.exists(path):
        return [], []
    with open(path) as f:
        trace = json.load(f)
    pairs = [(s, a) for s, a in zip(trace["step"], trace["alpha"])
             if before_step is None or s < before_step]
    return [s for s, _ in pairs], [a for _, a in pairs]


def read_history(run_dir):
    """history.csv (written by CSVLogger) as {column: [float, ...]}; {} when absent."""
    path = os.path.join(run_dir, HISTORY)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(float("nan"))
    return columns


def truncate_history(run_dir, epochs):
    """Keeps the first `epochs` rows of history.csv (a resumed run appends from there)."""
    path = os.path.join(run_dir, HISTORY)
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    epoch = rows[0].index("epoch") if "epoch" in rows[0] else 0
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[epoch])) < epochs]
    with files.atomic_output(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(kept)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # Files only: no display on servers and CI.
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path):
    """The figure as a PNG that replaces `path` only once complete."""
    try:
        with files.atomic_output(path) as f:
            fig.savefig(f, format="png", dpi=110)
    finally:
        plt.close(fig)


def plot_alpha(path, steps, alphas, steps_per_epoch, title):
    """alpha against the optimizer step, with epoch boundaries marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if steps:
        ax.plot(steps, alphas, lw=1.5, color="tab:blue")
        last = max(steps)
        if steps_per_epoch and last // steps_per_epoch <= 50:
            for e in range(1, last // steps_per_epoch + 1):
                ax.axvline(e * steps_per_epoch, color="0.85", lw=0.8, zorder=0)
    else:
        ax.text(0.5, 0.5, "ReLU baseline: alpha = 1 throughout", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("alpha (weight of ReLU)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(plt, fig, path)


def plot_curves(path, history, metric="accuracy", title=""):
    """Training and validation `metric` and loss per epoch, side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    for ax, key in zip(axes, (metric, "loss")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values and epochs:
                ax.plot(epochs, values, style, marker="o", ms=3,
                        label="validation" if prefix else "train")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(plt, fig, path)


def write_json(path, obj):
    files.atomic_write_json(path, obj, indent=1, default=_jsonable)


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _fmt(value, percent=True):
    if value is None:
        return "-"
    if isinstance(value, float) and percent:
        return f"{100 * value:.2f} %"
    return str(value)


def _size(n):
    if not n:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def summary_table(metrics):
    """A few lines for stdout: the metric of each model form, sizes, time and where things are."""
    m = metrics["metric"]
    rows = [("model", f"test {m}", "file size")]
    sizes = metrics.get("sizes", {})
    scores = metrics.get(m, {})
    rows.append((f"{metrics['mode']} model (float)", _fmt(scores.get("pea")),
                 _size(sizes.get("pea_model_bytes"))))
    if scores.get("stripped") is not None:
        rows.append(("stripped ReLU (float)", _fmt(scores.get("stripped")),
                     _size(sizes.get("relu_model_bytes"))))
    if scores.get("int8") is not None:
        rows.append(("int8 TFLite (LiteRT)", _fmt(scores.get("int8")),
                     _size(sizes.get("tflite_int8_bytes"))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    extra = [f"{metrics['arch']} ({metrics['params']:,} parameters) on {metrics['dataset']}, "
             f"mode {metrics['mode']}, alpha at end {metrics['alpha_final']:.3f}, "
             f"wall time {metrics['wall_time_s']['total']:.0f} s"]
    tflite = metrics.get("tflite") or {}
    if tflite.get("path"):
        # Written only once `convert` proved it ReLU-only.
        notes = "".join(f", with {note}" for note in tflite.get("passed_outside_relu", ()))
        extra.append(f"int8 file: {tflite['path']} (ReLU-only{notes})")
        if tflite.get("micro_kit"):  # Its files sit next to it, named as this line says.
            extra.append(micro_kit.build_line(os.path.splitext(os.path.basename(tflite["path"]))[0]))
    if tflite.get("device"):
        extra.append(devices.describe(tflite["device"]))
    extra.append(f"run directory: {metrics['run_dir']}")
    return "\n".join(lines + [""] + extra)


def compare_table(comparison):
    """The ReLU baseline and PEA side by side, with PEA's gain in points."""
    m = comparison["metric"]
    rows = [("form", "relu", "pea", "pea - relu")]
    for form in ("pea", "stripped", "int8"):
        d = comparison["difference"].get(form)
        if d is None:
            continue
        label = {"pea": "float (as trained)", "stripped": "float ReLU", "int8": "int8 TFLite"}[form]
        rows.append((label, _fmt(comparison["relu"].get(form)), _fmt(comparison["pea"].get(form)),
                     f"{100 * d:+.2f} pt"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"test {m}, seed {comparison['seed']}\n" + "\n".join(lines)
