"""What relufy gains at deploy time: each network with its own activation g against its relufied ReLU network.

Three networks at their native 224x224x3 input, 1000 logits out (untrained: latency, arena and cycles
do not depend on the weights; logits, since TFLite Micro aborts on an int8 softmax of the huge logits
of random weights):
  mobilenet_v2_silu   MobileNetV2 0.35 with SiLU in place of every ReLU, [0, 1] images in
  mobilenet_v3_small  keras.applications MobileNetV3Small (hard-swish, hard-sigmoid gates), 0-255 in
  efficientnet_b0     keras.applications EfficientNetB0 (SiLU, sigmoid gates), 0-255 in
and two int8 files of each:
  g         the network as it is, through `pea_keras.tflite.quantize` (unchecked: `convert` refuses
            a network that is not ReLU-only)
  relufied  `pea_keras.relufy`, alpha 1, `pea_keras.strip`: the ReLU network with ReLU6 hard-sigmoid
            gates, through the product's `pea_keras.tflite.convert(..., allow_gates=True)`
For each file: size, the ReLU-only check (gates allowed), LiteRT latency at batch 1 on one thread
with the builtin kernels and with XNNPACK (every file of every network interleaved in one run, as
`deploy.py` does), whether TensorFlow Lite Micro loads and runs it and its arena, and Vela's
estimates (cycles, SRAM; not measurements) for Ethos-U55-128 and U65-256 with Vela's default system
config of each; per network the ratio g / relufied of each.

    nice python benchmarks/relufy_deploy.py     # writes docs/results/relufy_deploy.json
    python benchmarks/relufy_deploy.py --report # the markdown table
    python benchmarks/relufy_deploy.py --quick  # smoke: 64 px, 1 repeat
"""
import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import deploy  # noqa: E402
from common import REPO, RESULTS  # noqa: E402

from pea_keras.files import atomic_write_json  # noqa: E402

NETWORKS = ("mobilenet_v2_silu", "mobilenet_v3_small", "efficientnet_b0")
FILES = ("g", "relufied")
ETHOS_U = ["ethos-u55-128", "ethos-u65-256"]
KERNELS = ("builtin", "xnnpack")
JSON = os.path.join(RESULTS, "relufy_deploy.json")


def g_network(name, k, size):
    """(the untrained network with its own activation, the top of its pixel range)."""
    import pea_keras
    from pea_keras.training.tasks.classification import archs

    k.utils.set_random_seed(0)
    shape = (size, size, 3)
    if name == "mobilenet_v2_silu":
        return pea_keras.replace_relu(archs.build("mobilenet_v2", k, shape, 1000, width=0.35), "silu"), 1.0
    if name == "mobilenet_v3_small":  # Its default input is any size: the size is given.
        return k.applications.MobileNetV3Small(input_shape=shape, weights=None, minimalistic=False,
                                               classifier_activation=None), 255.0
    return k.applications.EfficientNetB0(input_shape=shape, weights=None, classifier_activation=None), 255.0


def relufied(model):
    """The ReLU network relufy hands `model` over to: alpha 1, stripped."""
    import pea_keras

    pea = pea_keras.relufy(model)
    pea_keras.set_alpha(pea, 1.0)
    return pea_keras.strip(pea)


def build_files(args):
    """{(network, file): int8 tflite bytes}."""
    import keras
    import numpy as np

    from pea_keras.tflite import convert, quantize

    files, t0 = {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pea-relufy-deploy-") as tmp:
        for net in args.networks:
            model, top = g_network(net, keras, args.image_size)
            calibration = np.random.default_rng(0).uniform(
                0, top, (args.calibration, args.image_size, args.image_size, 3)).astype("float32")
            files[(net, "g")] = quantize(model, calibration)
            # The product's path: quantize, ReLU-only proof (gates named), LiteRT + TFLM load test.
            conv = convert(relufied(model), os.path.join(tmp, f"{net}.tflite"), calibration, allow_gates=True)
            with open(conv.path, "rb") as f:
                files[(net, "relufied")] = f.read()
            print(f"  {net}: g {len(files[(net, 'g')])} bytes, relufied {conv.size_bytes} bytes "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return files


def file_row(data, latency, args):
    import numpy as np

    from pea_keras.tflite import relu_only_violations

    violations = relu_only_violations(data, int8=True, allow_gates=True)
    n = args.micro_images
    x = np.random.default_rng(1).uniform(0, 1, (n, args.image_size, args.image_size, 3)).astype("float32")
    micro, arena, agreement, note = deploy.micro_check(data, x, np.zeros(n, int))
    return {"bytes": len(data), "relu_only": not violations, "violations": len(violations),
            "first_violations": [str(v) for v in violations[:3]],
            **latency, "micro": micro, "arena_bytes": arena, "micro_agreement": agreement, "micro_note": note,
            "ethos_u": deploy.ethos_u_estimates(data, args.ethos_u)}


def ratios(g, relu, accelerators):
    """g / relufied of every measure both files have."""
    def r(a, b):
        return a / b if a and b else None

    out = {key: r(g[key], relu[key]) for key in ("bytes", "arena_bytes", *(f"{kn}_ms" for kn in KERNELS))}
    for a in accelerators:
        eg, er = g["ethos_u"][a], relu["ethos_u"][a]
        out[a] = {key: r(eg.get(key), er.get(key)) for key in ("cycles", "sram_bytes")}
    return out


def run(args):
    import keras
    import tensorflow as tf

    args.ethos_u = deploy.available_ethos_u(args.ethos_u)
    print(f"{', '.join(args.networks)} at {args.image_size}x{args.image_size}, keras {keras.__version__}, "
          f"TF {tf.__version__}; building files", flush=True)
    files = build_files(args)
    print("timing (interleaved)", flush=True)
    named = {f"{n}/{f}": data for (n, f), data in files.items()}
    times = deploy.interleaved_latency(named, args.repeats, args.runs)
    networks = {}
    for net in args.networks:
        rows = {f: file_row(files[(net, f)], {f"{kn}_ms": times[(f"{net}/{f}", kn)] for kn in KERNELS}, args)
                for f in FILES}
        networks[net] = {**rows, "g / relufied": ratios(rows["g"], rows["relufied"], args.ethos_u)}
        print(f"  {net}: measured", flush=True)
    settings = {key: value for key, value in vars(args).items() if key not in ("json", "report")}
    return {"args": settings, "litert": deploy.litert_version(),
            "vela": deploy.vela_version() if args.ethos_u else None, "tensorflow": tf.__version__,
            "keras": keras.__version__, "networks": networks}


def _kib(n):
    return f"{n / 1024:.0f}" if n else "-"


def _x(v, digits=2):
    return f"{v:.{digits}f}x" if v else "-"


def report(result):
    """The markdown table of a result: each network's two files, then g / relufied."""
    accelerators = result["args"]["ethos_u"]
    short = [a.replace("ethos-", "").upper() for a in accelerators]
    print(f"LiteRT {result['litert']} (batch 1, 1 thread, median of {result['args']['repeats']} x "
          f"{result['args']['runs']} invokes), Vela {result['vela']} estimates, "
          f"{result['args']['image_size']} px, int8\n")
    head = (["network", "file", "KiB", "ReLU-only", "builtin ms", "XNNPACK ms", "TFLM arena KiB"]
            + [f"{s} {m}" for s in short for m in ("Mcycles", "SRAM KiB")] + ["on CPU"])
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for net, rows in result["networks"].items():
        for f in FILES:
            r = rows[f]
            cpu = sorted({op for a in accelerators for op in r["ethos_u"][a].get("cpu_operators", {})})
            cells = [net, f, _kib(r["bytes"]), "yes" if r["relu_only"] else "no",
                     f"{r['builtin_ms']:.1f}", f"{r['xnnpack_ms']:.1f}",
                     _kib(r["arena_bytes"]) if r["micro"] else "does not load"]
            for a in accelerators:
                e = r["ethos_u"][a]
                cells += ([f"{e['cycles'] / 1e6:.2f}", _kib(e["sram_bytes"])] if "cycles" in e else ["failed", "-"])
            print("| " + " | ".join(cells + [", ".join(cpu) or "-"]) + " |")
        q = rows["g / relufied"]
        cells = [net, "**g / relufied**", _x(q["bytes"]), "", _x(q["builtin_ms"]), _x(q["xnnpack_ms"]),
                 _x(q["arena_bytes"])]
        for a in accelerators:
            cells += [_x(q[a]["cycles"]), _x(q[a]["sram_bytes"])]
        print("| " + " | ".join(cells + [""]) + " |")
    for net, rows in result["networks"].items():
        for f in FILES:
            if not rows[f]["micro"]:
                print(f"\n{net} {f} on TFLite Micro: {rows[f]['micro_note']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--calibration", type=int, default=4, help="random calibration images")
    parser.add_argument("--runs", type=int, default=10, help="timed invokes per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats; the median is reported")
    parser.add_argument("--micro_images", type=int, default=2, help="random images run on TFLite Micro")
    parser.add_argument("--ethos_u", nargs="*", default=ETHOS_U, metavar="ACCELERATOR")
    parser.add_argument("--quick", action="store_true", help="smoke: 64 px, 1 repeat of 2 invokes")
    parser.add_argument("--json", default=None, help=f"results file (default {os.path.relpath(JSON, REPO)}; "
                                                     "--quick: ..._quick.json)")
    parser.add_argument("--report", action="store_true", help="print the markdown table of the results file")
    args = parser.parse_args()
    if args.json is None:
        args.json = JSON.replace(".json", "_quick.json") if args.quick else JSON
    if args.report:
        import json

        with open(args.json) as f:
            report(json.load(f))
        return
    if args.quick:
        args.image_size, args.runs, args.repeats, args.calibration, args.micro_images = 64, 2, 1, 2, 1
    warnings.filterwarnings("ignore")
    result = run(args)
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}\n")
    report(result)


if __name__ == "__main__":
    main()
