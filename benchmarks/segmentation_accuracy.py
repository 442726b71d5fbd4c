"""Does PEA help segmentation? mIoU of the ReLU baseline and PEA over seeds, float and int8.

For each seed, `train.py --task segmentation --compare` (the product's chain, `comparison.compare`)
trains, from the same initial weights and on the same batches of the same digit scenes:
  relu        the plain ReLU network
  pea_<g>     PEA with g (default silu): PEAScheduler with the default cosine schedule
              (alpha 0 -> 1 over the first 75 % of steps), then pea_keras.strip
and scores on the test split (400 scenes of held-out handwritten digits, 11 classes):
  float       the stripped ReLU Keras model (equal to the PEA model at alpha = 1)
  int8        the full-integer TFLite file on LiteRT (checked ReLU-only by the chain)
with the mean IoU over classes and pixel accuracy, then the paired difference pea - relu over
seeds (mean, 95 % t interval, paired t, wins/ties/losses). The seed sets initial weights, batch order and the
generated scenes; the test split is scored once per trained model, nothing is selected on it.

    python benchmarks/segmentation_accuracy.py              # 5 seeds, ~35 min on 2 busy cores
    python benchmarks/segmentation_accuracy.py --resume     # add the missing seeds to the JSON
    python benchmarks/segmentation_accuracy.py --quick      # smoke: 1 seed, 32 px, a few steps
"""
import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

import common
from common import RESULTS
from paired_stats import paired

MEASURES = ("float", "int8")


def one_seed(config, seed, work):
    """comparison.compare for one seed -> {"relu"|"pea_<g>": {float, int8, pixel accuracy, seconds}}."""
    from pea_keras.tflite import relu_only_violations
    from pea_keras.training.comparison import compare

    t = time.time()
    cfg = dataclasses.replace(config, seed=seed, output_dir=os.path.join(work, f"seed{seed}"),
                              tflite_dir=os.path.join(work, f"seed{seed}", "tflite"))
    comparison = compare(cfg)
    out = {}
    for mode in ("relu", "pea"):
        with open(os.path.join(comparison["runs"][mode], "metrics.json")) as f:
            m = json.load(f)
        name = "relu" if mode == "relu" else f"pea_{config.activation}"
        out[name] = {"float": m["miou"]["stripped"], "int8": m["miou"]["int8"],
                     "pea_float": m["miou"]["pea"],
                     "pixel_accuracy_float": m["pixel_accuracy"]["stripped"],
                     "pixel_accuracy_int8": m["pixel_accuracy"]["int8"],
                     "per_class_iou_int8": m["per_class_iou"]["int8"],
                     "relu_only": relu_only_violations(m["tflite"]["path"], int8=True) == [], "params": m["params"],
                     "int8_bytes": m["sizes"]["tflite_int8_bytes"],
                     "wall_s": m["wall_time_s"]["total"]}
    print(f"  seed {seed}: " + "  ".join(
        f"{k} float {100 * v['float']:.2f} int8 {100 * v['int8']:.2f}" for k, v in out.items())
        + f"  ({time.time() - t:.0f} s)", flush=True)
    return out


def summarize(runs, seeds, configs):
    table = []
    for config in configs:
        for measure in MEASURES:
            vals = [runs[s][config][measure] for s in seeds]
            row = {"config": config, "measure": measure, "n": len(vals),
                   "mean": statistics.fmean(vals),
                   "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
            if config != "relu":
                row["diff"] = paired(vals, [runs[s]["relu"][measure] for s in seeds])
            table.append(row)
    return table


def markdown(table):
    lines = ["| config | measure | n | mIoU mean % | std | PEA - ReLU (paired) pt [95 % CI] | t | wins/ties/losses |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        d = r.get("diff")
        ci = d and d["ci95"] and f" [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]"
        diff = f"{100 * d['mean']:+.2f}{ci or ''}" if d else "-"
        t = f"{d['t']:.2f}" if d and d["t"] is not None else "-"
        wtl = f"{d['wins']}/{d['ties']}/{d['losses']}" if d else "-"
        lines.append(f"| {r['config']} | {r['measure']} | {r['n']} | {100 * r['mean']:.2f} | "
                     f"{100 * r['std']:.2f} | {diff} | {t} | {wtl} |")
    return "\n".join(lines)


# Arguments that may differ between the runs kept by --resume and the new ones.
_RESUMABLE = ("seeds", "quick", "json", "resume", "threads")


def _kept_runs(args):
    """{seed: runs} of the JSON when --resume and it was made with the same arguments."""
    if not (args.resume and os.path.exists(args.json)):
        return {}, None
    with open(args.json) as f:
        old = json.load(f)
    same = {k: v for k, v in vars(args).items() if k not in _RESUMABLE}
    changed = [k for k, v in same.items() if old["args"].get(k, v) != v]
    if changed:
        sys.exit(f"segmentation_accuracy.py: error: --resume with other arguments than {args.json}: "
                 + ", ".join(changed))
    runs = {}
    for r in old["runs"]:
        runs.setdefault(r["seed"], {})[r["config"]] = {k: v for k, v in r.items()
                                                       if k not in ("seed", "config")}
    return runs, old


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--arch", default="lraspp_mobilenet_v2")
    parser.add_argument("--activation", default="silu")
    parser.add_argument("--width", type=float, default=0.35)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps_per_epoch", type=int, default=0, help="0: one pass (62 steps)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--keras", default="2", choices=["2", "3"])
    common.add_threads_argument(parser)
    parser.add_argument("--resume", action="store_true",
                        help="keep the seeds already in --json (same arguments) and run only the others; "
                             "the JSON is rewritten after every seed")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 seed, 32 px, 1 epoch of 4 steps, 64 test scenes on LiteRT")
    parser.add_argument("--json", default=os.path.join(RESULTS, "segmentation.json"))
    args = parser.parse_args()
    eval_examples = 0
    if args.quick:
        args.seeds, args.image_size, args.epochs, args.steps_per_epoch = 1, 32, 1, 4
        eval_examples = 64
        common.quick_paths(args, "json")
    common.quiet_tensorflow(args.threads)
    from pea_keras.training.run import RunConfig

    config = RunConfig(task="segmentation", arch=args.arch, activation=args.activation,
                       width=args.width, image_size=args.image_size, epochs=args.epochs,
                       steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                       lr=args.lr, keras=args.keras, verbose="0", calibration_examples=128,
                       tflite_eval_examples=eval_examples)
    seeds = list(range(args.seeds))
    configs = ["relu", f"pea_{args.activation}"]
    runs, old = _kept_runs(args)
    runs = {s: r for s, r in runs.items() if s in seeds}
    started = time.time()
    history = (old or {}).get("history", [])
    if old:
        history = history or [{k: old.get(k) for k in ("command", "started_utc", "wall_s", "cpus")}
                              | {"seeds": old.get("seeds")}]
    history.append({"command": common.command(), "started_utc": common.now(started), "threads": args.threads,
                    "cpus": os.cpu_count()})
    print(f"{args.arch} width {args.width} on digit_scenes {args.image_size} px, "
          f"{args.epochs} x {args.steps_per_epoch} steps of {args.batch_size}, seeds {seeds}"
          + (f" (kept: {sorted(runs)})" if runs else ""), flush=True)

    def write():
        done = sorted(runs)
        table = summarize(runs, done, configs)
        text = markdown(table)
        history[-1]["wall_s"] = time.time() - started
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        from pea_keras import files

        files.atomic_write_json(args.json, {
            "command": common.command(), "started_utc": common.now(started), "wall_s": history[-1]["wall_s"],
            **common.machine(),
            "args": vars(args), "run_config": dataclasses.asdict(config), "seeds": done,
            "history": history,
            "runs": [{"seed": s, "config": c, **r} for s in done for c, r in runs[s].items()],
            "summary": table, "markdown": text})
        return text

    text = None
    with tempfile.TemporaryDirectory(prefix="pea-seg-bench-") as work:
        for seed in seeds:
            if seed in runs:
                continue
            runs[seed] = one_seed(config, seed, work)
            text = write()
    text = text or write()
    print("\n" + text)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
