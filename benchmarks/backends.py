"""Training-step time of PEA on each Keras 3 backend (and tf_keras), measured in one run.

For each backend a fresh process (Keras 3 picks its backend at import) trains, with `fit`
and `PEAScheduler` as a user would, on the same random data:
  relu       the plain network
  pea_blend  PEA while blending (alpha = 0.5; the one-op custom gradient)
  pea_relu   PEA at alpha = 1 (the ReLU network's own graph)
  g_only     `pea_keras.replace_relu(model, g)`: the network with g in place of every ReLU
A step is the interval between consecutive batch ends (the loss is read each step, so
asynchronous backends cannot run ahead); the figure is the median over the steps after
warm-up, and the median of that over interleaved repeats. Ratios compare within one run.

    nice -n 10 python benchmarks/backends.py                   # tensorflow, jax, torch if installed, tf_keras
    python benchmarks/backends.py --backends tensorflow,jax --steps 10 --repeats 1
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = ["relu", "pea_blend", "pea_relu", "g_only"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    base = k.applications.MobileNetV2((args.image_size, args.image_size, 3), alpha=args.width,
                                      weights=None, classes=10)

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

    times = {config: [] for config in CONFIGS}
    models = {config: build(config) for config in CONFIGS}
    for _ in range(args.repeats):
        for config in CONFIGS:  # Interleaved, so a load change hits every config alike.
            model, callbacks = models[config]
            clock = Clock()
            model.fit(x, y, batch_size=args.batch, epochs=1, shuffle=False, verbose=0,
                      callbacks=[*callbacks, clock])
            steps = [b - a for a, b in zip(clock.ends[args.warmup:], clock.ends[args.warmup + 1:])]
            times[config].append(1000.0 * statistics.median(steps))
    backend = "tensorflow (tf_keras)" if args.backend == "tf_keras" else k.backend.backend()
    return {"backend": backend, "ms": {c: statistics.median(v) for c, v in times.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = ["tensorflow", "jax"] + (["torch"] if importlib.util.find_spec("torch") else []) + ["tf_keras"]
    parser.add_argument("--backends", default=",".join(default),
                        help="comma-separated: tensorflow, jax, torch (Keras 3) and tf_keras")
    parser.add_argument("--width", type=float, default=0.35, help="MobileNetV2 width (alpha)")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--activation", default="silu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per fit")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per fit (tracing, compiling)")
    parser.add_argument("--repeats", type=int, default=2)
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
    results = []
    for backend in backends:
        env = {**os.environ, "KERAS_BACKEND": "tensorflow" if backend == "tf_keras" else backend,
               "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu",
               "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
        child = subprocess.run([sys.executable, __file__, "--child", backend, *sys.argv[1:]],
                               capture_output=True, text=True, env=env)
        if child.returncode != 0:
            lines = [line for line in child.stderr.splitlines() if line.strip()]
            print(f"{backend}: failed: {lines[-1] if lines else 'no message'}", file=sys.stderr)
            continue
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"MobileNetV2 {args.width} at {args.image_size}x{args.image_size}, batch {args.batch}, g = "
          f"{args.activation}: ms/step (median of {args.repeats} x {args.steps} steps)")
    print(f"{'backend':24}" + "".join(f"{c:>11}" for c in CONFIGS) + f"{'blend/relu':>12}{'relu@1/relu':>12}")
    for r in results:
        ms = r["ms"]
        print(f"{r['backend']:24}" + "".join(f"{ms[c]:11.1f}" for c in CONFIGS)
              + f"{ms['pea_blend'] / ms['relu']:12.2f}{ms['pea_relu'] / ms['relu']:12.2f}")
    reference = next((r for r in results if r["backend"] == "tensorflow"), None)
    if reference:
        print("relative to Keras 3 on TensorFlow, per config:")
        for r in results:
            if r is not reference:
                ratios = [r["ms"][c] / reference["ms"][c] for c in CONFIGS]
                print(f"{r['backend']:24}" + "".join(f"{ratio:11.2f}" for ratio in ratios))


if __name__ == "__main__":
    main()
