"""What PEA costs at deploy time: LiteRT latency and size of the files, side by side in one run.

One architecture (default mobilenet_v2 width 0.35 at 96x96), briefly trained on digits (latency and
size do not depend on accuracy), converted to TFLite:
  pea_silu      PEA (g = silu, default schedule until alpha = 1), stripped, `pea_keras.tflite.convert`
  relu          the same arch trained as plain ReLU, `convert`: must cost 1.00x (same op list)
  g_<g>         the arch with g in place of every ReLU (silu, hard_swish, gelu, mish), int8 through
                `pea_keras.tflite.quantize` (unchecked: `convert` refuses non-ReLU networks)
  relu_float32  the ReLU network as a float32 file (no quantization)
For each file: size, ReLU-only check, LiteRT latency at batch 1 on one thread with the builtin
kernels and with XNNPACK (`OpResolverType.AUTO`), medians of per-invoke times over interleaved
repeats (warm-up excluded), and whether TensorFlow Lite Micro loads and runs it (with its arena
size and top-1 agreement with LiteRT's builtin kernels on a few test images). For each int8 file,
Arm's Vela (`pip install 'pea_keras[npu]'`) compiles it for Ethos-U55-128, U65-256 and U85-256 with
Vela's default system config of each, and its performance model estimates cycles and SRAM (estimates,
not measurements; `--ethos_u` picks the accelerators, `--ethos_u` alone none).

    python benchmarks/deploy.py                 # mobilenet_v2 0.35 at 96x96
    python benchmarks/deploy.py --quick         # 32x32, fewer repeats
"""
import argparse
import importlib
import os
import statistics
import tempfile
import time
import warnings

from common import FLAVORS

from pea_keras.files import atomic_write_json

G_ACTIVATIONS = ["silu", "hard_swish", "gelu", "mish"]
CONFIGS = ["pea_silu", "relu"] + [f"g_{g}" for g in G_ACTIVATIONS] + ["relu_float32"]
ETHOS_U = ["ethos-u55-128", "ethos-u65-256", "ethos-u85-256"]
KERNELS = {"builtin": False, "xnnpack": True}  # LiteRT: XNNPACK off, on


def train_briefly(model, k, x, y, steps, pea=False):
    import tensorflow as tf

    import pea_keras

    ds = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).repeat()
          .batch(32, drop_remainder=True))
    model.compile(k.optimizers.Adam(2e-3), k.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = [pea_keras.PEAScheduler()] if pea else []
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=callbacks)
    return model


def float32_bytes(model):
    import tensorflow as tf

    from pea_keras.flavor import is_tf_keras

    if is_tf_keras(model):
        return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with tempfile.TemporaryDirectory(prefix="pea-export-") as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        return bytes(tf.lite.TFLiteConverter.from_saved_model(tmp).convert())


def build_files(args, k, data):
    """{config: tflite bytes} (or an error string) for every config."""
    import pea_keras
    from pea_keras.tflite import convert, quantize
    from pea_keras.training.tasks.classification import archs

    x, y = data
    calibration = x[:args.calibration]
    shape = x.shape[1:]

    def fresh():
        k.utils.set_random_seed(0)
        return archs.build(args.arch, k, shape, 10, width=args.width, bn_momentum=0.9)

    files = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pea-deploy-") as tmp:
        relu = train_briefly(fresh(), k, x, y, args.train_steps)
        pea = train_briefly(pea_keras.wrap(fresh(), activation="silu"), k, x, y, args.train_steps, pea=True)
        for name, model in (("pea_silu", pea), ("relu", relu)):
            # The checked product path: strip, quantize, ReLU-only proof, LiteRT + TFLM load test.
            conv = convert(model, os.path.join(tmp, f"{name}.tflite"), calibration)
            with open(conv.path, "rb") as f:
                files[name] = f.read()
            print(f"  {name}: converted ({conv.size_bytes} bytes, "
                  f"{conv.pea_layers_stripped} PEA layers stripped; {time.perf_counter() - t0:.0f} s)", flush=True)
        for g in G_ACTIVATIONS:
            name = f"g_{g}"
            try:
                model = train_briefly(pea_keras.replace_relu(fresh(), g), k, x, y, args.train_steps)
                files[name] = quantize(model, calibration)
                print(f"  {name}: quantized ({len(files[name])} bytes; {time.perf_counter() - t0:.0f} s)", flush=True)
            except Exception as e:  # noqa: BLE001 (a g without an int8 path is a finding)
                files[name] = f"conversion failed: {str(e).strip().splitlines()[0][:160]}"
                print(f"  {name}: {files[name]}", flush=True)
        files["relu_float32"] = float32_bytes(relu)
        print(f"  relu_float32: converted ({len(files['relu_float32'])} bytes)", flush=True)
    return files


def op_signature(data):
    from pea_keras.tflite import inspect

    return [(op.type, op.activation) for op in inspect(data).operators]


def micro_check(data, x, y):
    """(runs on TFLM?, arena bytes, top-1 agreement with LiteRT builtin, note)."""
    from pea_keras.tflite import TFLiteError, evaluate, micro_arena_bytes

    try:
        arena = micro_arena_bytes(data)
        result = evaluate(data, x, y, runtime="both")
        return True, arena, result["agreement"], f"max diff {result['max_diff_steps']:.2f} steps"
    except TFLiteError as e:
        return False, None, None, str(e)[:160]


def ethos_u_estimates(data, accelerators):
    """{accelerator: Vela's estimates for the file} with Vela's default system config of each."""
    from pea_keras.tflite import TFLiteError
    from pea_keras.tflite.vela import Config, compile_file

    out = {}
    for accelerator in accelerators:
        try:
            c = compile_file(data, Config(accelerator))
        except TFLiteError as e:
            out[accelerator] = {"error": str(e)[:160]}
            continue
        out[accelerator] = {"cycles": c.cycles, "inference_s": c.inference_s, "sram_bytes": c.sram_bytes,
                            "memory_bytes": c.memory_bytes, "arena_bytes": c.arena_bytes,
                            "npu_operators": c.npu_operators, "cpu_operators": c.cpu_operators,
                            "system_config": c.system_config, "memory_mode": c.memory_mode,
                            "vela_bytes": len(c.data)}
    return out


def available_ethos_u(accelerators):
    """`accelerators`, or none when Vela is not installed (said once)."""
    from pea_keras.tflite.vela import installed

    if accelerators and not installed():
        print("Vela is not installed (pip install 'pea_keras[npu]'): no Ethos-U columns", flush=True)
        return []
    return accelerators


def vela_version():
    from pea_keras.tflite.vela import version

    return version()


def interleaved_latency(files, repeats, runs):
    """{(name, kernel): median ms of one LiteRT invoke} for {name: tflite bytes}, batch 1 on one thread,
    with the builtin kernels and with XNNPACK: the median over `repeats` rounds of `runs` invokes, the
    rounds interleaved so that drift in machine load hits every file alike (warm-up excluded)."""
    from pea_keras.tflite.runtimes import latency_ms

    for data in files.values():  # Warm-up: load and run every file on both paths once.
        for xnn in KERNELS.values():
            latency_ms(data, runs=3, warmup=3, num_threads=1, xnnpack=xnn)
    times = {(name, kn): [] for name in files for kn in KERNELS}
    for _ in range(repeats):
        for name, data in files.items():
            for kn, xnn in KERNELS.items():
                times[(name, kn)].append(latency_ms(data, runs=runs, num_threads=1, xnnpack=xnn))
    return {key: statistics.median(t) for key, t in times.items()}


def _ratio(estimate, base, key):
    return estimate[key] / base[key] if base.get(key) else float("nan")


def print_ethos_u(rows, accelerators):
    base = next(r for r in rows if r["config"] == "relu")["ethos_u"]
    print(f"\nEthos-U, Vela {vela_version()} performance model (estimates, not measurements), Vela's default "
          "system config per accelerator; x relu = ratio to the plain ReLU int8 file")
    for a in accelerators:
        if "system_config" in base[a]:
            print(f"  {a}: {base[a]['system_config']}, {base[a]['memory_mode']}")
    print(f"{'config':13s} " + " ".join(f"{a[6:]:>8s} cyc {'x relu':>6s} {'SRAM KiB':>8s} {'x relu':>6s}"
                                        for a in accelerators) + "  CPU ops")
    for r in rows:
        if "ethos_u" not in r:
            continue
        cells, cpu = [], set()
        for a in accelerators:
            e, b = r["ethos_u"][a], base[a]
            if "error" in e:
                cells.append(f"{'failed':>33s}")
                continue
            cpu |= set(e["cpu_operators"])
            cells.append(f"{e['cycles']:12d} {_ratio(e, b, 'cycles'):6.2f} {e['sram_bytes'] / 1024:8.1f} "
                         f"{_ratio(e, b, 'sram_bytes'):6.2f}")
        print(f"{r['config']:13s} " + " ".join(cells) + f"  {', '.join(sorted(cpu)) or '-'}")
    for r in rows:
        for a, e in r.get("ethos_u", {}).items():
            if "error" in e:
                print(f"  {r['config']} on {a}: {e['error']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--width", type=float, default=0.35)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--keras", default="2", choices=sorted(FLAVORS))
    parser.add_argument("--train_steps", type=int, default=20, help="brief training per model (batch 32)")
    parser.add_argument("--calibration", type=int, default=64, help="calibration images")
    parser.add_argument("--runs", type=int, default=50, help="timed invokes per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats; the median is reported")
    parser.add_argument("--micro_images", type=int, default=8, help="test images run on TFLite Micro")
    parser.add_argument("--quick", action="store_true", help="32x32 images, 3 repeats of 20 invokes")
    parser.add_argument("--ethos_u", nargs="*", default=ETHOS_U, metavar="ACCELERATOR",
                        help="Ethos-U accelerators Vela estimates each int8 file for (default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write the table to this file")
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.runs, args.repeats, args.train_steps = 32, 20, 3, 5
    warnings.filterwarnings("ignore")
    import tensorflow as tf

    from pea_keras.data.digits import load_digits_split
    from pea_keras.tflite import inspect, relu_only_violations

    args.ethos_u = available_ethos_u(args.ethos_u)

    k = importlib.import_module(FLAVORS[args.keras])
    split = load_digits_split(args.image_size, channels=3, seed=0)
    print(f"{args.arch} width {args.width} at {args.image_size}x{args.image_size}, {k.__name__} "
          f"{k.__version__}, TF {tf.__version__}; building files", flush=True)
    files = build_files(args, k, split["train"])
    ok = {c: b for c, b in files.items() if isinstance(b, bytes)}

    same_ops = op_signature(ok["pea_silu"]) == op_signature(ok["relu"])
    print(f"stripped PEA and plain ReLU int8 files have the same op list: {'yes' if same_ops else 'NO'}"
          f"; byte-identical: {'yes' if ok['pea_silu'] == ok['relu'] else 'no (different weights)'}",
          flush=True)

    times = interleaved_latency(ok, args.repeats, args.runs)

    x_test, y_test = split["test"]
    rows = []
    for c in CONFIGS:
        data = files[c]
        if not isinstance(data, bytes):
            rows.append({"config": c, "error": data})
            continue
        micro, arena, agreement, note = micro_check(data, x_test[:args.micro_images], y_test[:args.micro_images])
        rows.append({
            "config": c, "bytes": len(data),
            "relu_only": not relu_only_violations(data, int8=(c != "relu_float32")),
            "ops": len(op_signature(data)), "op_histogram": inspect(data).op_histogram(),
            **{f"{kn}_ms": times[(c, kn)] for kn in KERNELS},
            "micro": micro, "arena_bytes": arena, "micro_agreement": agreement, "micro_note": note,
            **({"ethos_u": ethos_u_estimates(data, args.ethos_u)} if args.ethos_u and c != "relu_float32" else {})})
    base = next(r for r in rows if r["config"] == "relu")

    print(f"\nLiteRT {litert_version()}, batch 1, num_threads=1, median of {args.repeats} x {args.runs} "
          f"invokes; x relu = ratio to the plain ReLU int8 file")
    print(f"{'config':13s} {'bytes':>9s} {'x relu':>6s} {'ReLU-only':>9s} {'ops':>4s} {'builtin ms':>10s} "
          f"{'x relu':>6s} {'XNNPACK ms':>10s} {'x relu':>6s}  {'TFLM':4s} {'arena B':>9s} {'agree':>5s}")
    for r in rows:
        if "error" in r:
            print(f"{r['config']:13s} {r['error']}")
            continue
        arena = f"{r['arena_bytes']:9d}" if r["arena_bytes"] else f"{'-':>9s}"
        agree = f"{r['micro_agreement']:5.2f}" if r["micro_agreement"] is not None else f"{'-':>5s}"
        print(f"{r['config']:13s} {r['bytes']:9d} {r['bytes'] / base['bytes']:6.2f} "
              f"{'yes' if r['relu_only'] else 'no':>9s} {r['ops']:4d} "
              f"{r['builtin_ms']:10.3f} {r['builtin_ms'] / base['builtin_ms']:6.2f} "
              f"{r['xnnpack_ms']:10.3f} {r['xnnpack_ms'] / base['xnnpack_ms']:6.2f}  "
              f"{'yes' if r['micro'] else 'NO':4s} {arena} {agree}")
    for r in rows:
        if not r.get("micro", True):
            print(f"  {r['config']}: {r['micro_note']}")
    if args.ethos_u:
        print_ethos_u(rows, args.ethos_u)
    if args.json:
        atomic_write_json(args.json, {"args": vars(args), "same_op_list_pea_vs_relu": same_ops, "rows": rows})


def litert_version():
    try:
        from importlib.metadata import version
        return version("ai-edge-litert")
    except Exception:  # noqa: BLE001
        return "(version unknown)"


if __name__ == "__main__":
    main()
