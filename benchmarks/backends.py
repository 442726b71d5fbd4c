"""Training-step time of PEA relative to ReLU on each Keras 3 backend (and tf_keras), as ratios.

For each backend a fresh process (Keras 3 picks its backend at import) trains, with `fit`
and `PEAScheduler` as a user would, on the same random data:
  relu       the plain network
  pea_blend  PEA while blending (alpha = 0.5; the one-op custom gradient)
  pea_relu   PEA at alpha = 1 (the ReLU network's own graph)
  g_only     `pea_keras.replace_relu(model, g)`: the network with g in place of every ReLU
A step is the interval between consecutive batch ends (the loss is read each step, so
asynchronous backends cannot run ahead); a fit's figure is the median over the steps after
warm-up. Configurations interleave within each process and backends take turns, one process
per backend and repeat, so a change of load hits every figure alike. Only ratios are printed
(each config / relu of the same backend and repeat, median over repeats): absolute times on a
shared machine say more about the machine than about PEA.

    nice -n 10 python benchmarks/backends.py                   # tensorflow, jax, torch if installed, tf_keras
    python benchmarks/backends.py --backends tensorflow,jax,torch --arch tiny --steps 5 --repeats 1
"""
import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time

import common

from pea_keras import files

CONFIGS = ["relu", "pea_blend", "pea_relu", "g_only"]


def measure(args):
    """Runs in the child process: this backend's ms/step per config."""
    import warnings

    import numpy as np

    if args.backend == "tf_keras":
        import tf_keras as k
    else:
        import keras as k

    import pea_keras

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    n = args.batch * (args.warmup + args.steps)
    x = rng.uniform(0.0, 1.0, size=(n, args.image_size, args.image_size, 3)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")
    k.utils.set_random_seed(0)
    from pea_keras.training.tasks.classification import archs

    base = archs.build(args.arch, k, (args.image_size, args.image_size, 3), 10, width=args.width)

    def build(config):
        if config == "relu":
            model, callbacks = k.models.clone_model(base), []
        elif config == "g_only":
            model, callbacks = pea_keras.replace_relu(base, args.activation), []
        else:
            alpha = 0.5 if config == "pea_blend" else 1.0
            model = pea_keras.wrap(base, args.activation, alpha=alpha)
            callbacks = [pea_keras.PEAScheduler(pea_keras.schedules.Constant(alpha))]
        model.compile(k.optimizers.SGD(0.01, momentum=0.9), k.losses.SparseCategoricalCrossentropy())
        return model, callbacks

    class Clock(k.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            float(np.asarray((logs or {}).get("loss", 0.0)))  # Wait for the step to finish.
            self.ends.append(time.perf_counter())

    ms = {}
    for config in CONFIGS:  # Interleaved, so a load change hits every config alike.
        model, callbacks = build(config)
        clock = Clock()
        model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0,
                  callbacks=[*callbacks, clock])
        steps = [b - a for a, b in zip(clock.ends[args.warmup:], clock.ends[args.warmup + 1:])]
        ms[config] = 1000.0 * statistics.median(steps)
    backend = "tensorflow (tf_keras)" if args.backend == "tf_keras" else k.backend.backend()
    return {"backend": backend, "ms": ms}


def child(backend):
    """One repeat of `backend` in its own process: {"backend", "ms"}, or None (and a line on stderr)."""
    env = common.child_env(KERAS_BACKEND="tensorflow" if backend == "tf_keras" else backend,
                           TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, __file__, "--child", backend, *sys.argv[1:]],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        print(f"{backend}: failed: {lines[-1] if lines else 'no message'}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = ["tensorflow", "jax"] + (["torch"] if importlib.util.find_spec("torch") else []) + ["tf_keras"]
    parser.add_argument("--backends", default=",".join(default),
                        help="comma-separated: tensorflow, jax, torch (Keras 3) and tf_keras")
    parser.add_argument("--arch", default="mobilenet_v2", help="a train.py --arch (tiny for a smoke test)")
    parser.add_argument("--width", type=float, default=0.35, help="width multiplier (the MobileNet alpha)")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--activation", default="silu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per fit")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per fit (tracing, compiling)")
    parser.add_argument("--repeats", type=int, default=2, help="processes per backend, taking turns")
    parser.add_argument("--json", help="also write the ratios to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.backend = args.child
        print(json.dumps(measure(args)))
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in ("tensorflow", "jax", "torch", "tf_keras")]
    if unknown or args.steps < 2 or args.repeats < 1 or args.warmup < 1:
        sys.exit("backends.py: --backends takes tensorflow, jax, torch, tf_keras; "
                 "--steps >= 2, --warmup >= 1, --repeats >= 1")
    columns = [*CONFIGS[1:], "relu_vs_tf"]
    ratios = {backend: {c: [] for c in columns} for backend in backends}
    names = {}
    for _ in range(args.repeats):
        relu_ms = {}
        for backend in backends:  # Backends take turns: a load change hits each of them.
            result = child(backend)
            if result:
                names[backend], relu_ms[backend] = result["backend"], result["ms"]["relu"]
                for c in CONFIGS[1:]:
                    ratios[backend][c].append(result["ms"][c] / result["ms"]["relu"])
        if "tensorflow" in relu_ms:  # ReLU's step against Keras 3 on TensorFlow, in the same round.
            for backend, ms in relu_ms.items():
                ratios[backend]["relu_vs_tf"].append(ms / relu_ms["tensorflow"])
    table = {names[b]: {c: statistics.median(v) if v else None for c, v in ratios[b].items()}
             for b in backends if b in names}
    print(f"{args.arch} {args.width} at {args.image_size}x{args.image_size}, batch {args.batch}, g = "
          f"{args.activation}: step time / ReLU's on the same backend, and ReLU's / Keras 3 on TensorFlow's "
          f"(median of {args.repeats} interleaved repeats x {args.steps} steps)")
    print(f"{'backend':24}" + "".join(f"{c.replace('_vs_', '/') + ('/relu' if c in CONFIGS else ''):>15}"
                                       for c in columns))
    for backend, row in table.items():
        print(f"{backend:24}" + "".join(f"{row[c]:15.2f}" if row[c] is not None else f"{'-':>15}"
                                         for c in columns))
    if args.json:
        files.atomic_write_json(args.json, {"setup": {k: v for k, v in vars(args).items()
                                                      if k not in ("json", "child")},
                                            "ratio_to_relu": table})
    if len(table) < len(backends):
        sys.exit(1)


if __name__ == "__main__":
    main()
