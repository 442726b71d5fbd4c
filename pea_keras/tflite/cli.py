"""``pea-tflite``: convert, inspect, check and run int8 TFLite files of PEA models.

User mistakes end with one line ``pea-tflite: error: ...`` and a non-zero exit
code, never a traceback, and never a half-written output file. Arguments are parsed
before TensorFlow is imported, so ``--help`` and argument errors answer at once, and
TensorFlow's and the converter's log lines are hidden unless ``--verbose``.
"""

import json
import os
import sys

from pea_keras import console
from pea_keras.errors import DataError
from pea_keras.tflite import targets
from pea_keras.tflite.cli_args import PROG, build_parser, data_flag


def _fail(message, code=1):
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _micro_main(args):
    from importlib import resources

    sys.stdout.write(resources.files("pea_keras.tflite").joinpath("micro/main.cc").read_text())
    return 0


def _bench(args):
    from pea_keras.errors import TFLiteError
    from pea_keras.tflite.inspection import inspect
    from pea_keras.tflite.runtimes import RuntimeFailure, latency_ms, micro_arena_bytes, micro_measure

    info = inspect(args.file)
    _refuse_host_run(args.file, info, "bench")
    try:
        ms = latency_ms(args.file, runs=args.runs, num_threads=args.threads, xnnpack=not args.no_xnnpack)
    except RuntimeFailure as litert:  # A file only TFLite Micro runs: what it measures is the answer.
        arena, micro_ms = micro_measure(args.file, runs=args.runs, failed_before=litert)
        print(f"{args.file}: {info.size_bytes} bytes, {litert}; TFLite Micro reference kernels on this host: "
              f"median {micro_ms:.3f} ms over {args.runs} runs, arena {arena} bytes")
        return 0
    try:
        arena = f"{micro_arena_bytes(args.file)} bytes"
    except TFLiteError as e:
        arena = f"unknown ({e})"
    kernels = "builtin kernels" if args.no_xnnpack else "XNNPACK"
    print(f"{args.file}: {info.size_bytes} bytes, LiteRT {kernels}, {args.threads} thread(s): "
          f"median {ms:.3f} ms over {args.runs} runs; TFLite Micro arena {arena}")
    return 0


def _refuse_host_run(path, info, verb):
    """A file compiled for a target this machine is not (an Ethos-U NPU) is refused in one line."""
    owner = targets.compiled_by(info)
    if owner is not None:
        owner.refuse_host_run(path, info, verb)


def _in_flags(e):
    """A data error as this tool says it: each library keyword it names as the flag that sets it."""
    return e.spelled(data_flag) if isinstance(e, DataError) else str(e)


def _convert(args):
    # Nothing here imports TensorFlow: convert refuses a bad target or output path at once.
    target = targets.configured(args.target, {o.dest: getattr(args, o.dest) for o in targets.options()})
    from pea_keras.data import calibration_samples, load_arrays
    from pea_keras.errors import TFLiteError
    from pea_keras.files import StorageError, write_error_message
    from pea_keras.tflite.conversion import convert

    c_dir = args.c_array or ((os.path.dirname(args.output) or os.curdir) if target.kit_next_to_file else None)

    def shape_of(inputs):  # One input: its shape; several: [(name, shape)].
        return inputs[0][1] if len(inputs) == 1 else inputs

    def calibration(inputs):  # Loaded while the converter child exports the model.
        try:
            return calibration_samples(args.calib, shape_of(inputs), limit=args.calib_samples,
                                       scale=args.calib_scale, any_range=args.calib_any_range)
        except (DataError, ValueError) as e:
            raise TFLiteError(f"--calib: {_in_flags(e)}") from None

    def qat_data(inputs):
        try:
            return load_arrays(args.train_data, shape_of(inputs), labelled=True, split="train",
                               scale=args.calib_scale)
        except (DataError, ValueError) as e:
            raise TFLiteError(f"--train_data: {_in_flags(e)}") from None

    try:  # convert checks the outputs first, then holds OUT.tflite's lock: one convert at a time writes it.
        conv = convert(args.model, args.output, calibration, target=target, io=args.io, overwrite=args.overwrite,
                       force_strip=args.force_strip, qat_epochs=args.qat_epochs,
                       qat_data=qat_data if args.qat_epochs else None, c_array_dir=c_dir,
                       golden_samples=args.golden_samples, trust_code=args.trust_model_code,
                       allow_gates=args.allow_gates, verbose=args.verbose)
    except OSError as e:  # A full or read-only disk: the outputs are written all or nothing.
        message = write_error_message(e, safe="no file was changed")
        if message is None:
            raise
        raise StorageError(message) from None
    print(conv.summary())
    return 0


def _inspect(args):
    from pea_keras.tflite.inspection import format_report, inspect, read_bytes

    info = inspect(args.file)
    if args.resolver:
        from pea_keras.tflite.op_resolver import op_resolver_header

        stem = os.path.splitext(os.path.basename(args.file))[0]
        print(op_resolver_header(info, stem, os.path.basename(args.file)), end="")
        return 0
    owner = targets.compiled_by(info)
    about = owner.describe(info, read_bytes(args.file)) if owner else None
    if args.json:
        print(json.dumps({**info.to_dict(), **({owner.json_key: about} if about else {})}, indent=1))
    else:
        print(format_report(info) + (f"\n{about}" if about else ""))
    return 0


def _check(args):
    from pea_keras.tflite.check import analyze, by_operator, micro_blocker, verdict
    from pea_keras.tflite.inspection import inspect

    info = inspect(args.file)
    proof = analyze(info, strict=args.strict, int8=args.int8, allow_gates=args.allow_gates)
    owner = targets.compiled_by(info)
    bad = proof.violations if owner is None else owner.readable(proof.violations)
    for where, reasons in by_operator(bad):
        print(f"{where}: {'; '.join(reasons)}")
    if owner is not None:
        return _fail(f"{args.file}: {owner.unproven(info, verdict(bad, args.int8))}")
    if not bad:
        print(f"{args.file}: {verdict(bad, args.int8, proof.notes)}")
    blocker = None if args.int8 else micro_blocker(info)  # --int8 names these faults itself.
    if blocker:  # Keras' own LiteRT export by default: Flex ops, float compute.
        print(f"{args.file}: {blocker}")
    return _fail(f"{args.file}: {verdict(bad, args.int8)}") if bad else 0


def _run(args):
    from pea_keras.data import class_names, load_arrays
    from pea_keras.errors import TFLiteError
    from pea_keras.tflite.inspection import inspect
    from pea_keras.tflite.runtimes import RUNTIMES, RuntimeFailure, class_count, evaluate

    info = inspect(args.file)
    _refuse_host_run(args.file, info, "run")
    class_count(info)  # Refuse what top-1 cannot score before reading any data.
    x, y = load_arrays(args.data, tuple(int(d) for d in info.inputs[0].shape), labelled=True,
                       split=args.split, limit=args.limit)
    try:
        result = evaluate(args.file, x, y, runtime=args.runtime)
    except RuntimeFailure as e:
        if args.runtime != "both":
            raise
        raise TFLiteError(f"{e}; --runtime litert runs the file on {RUNTIMES['litert']} alone") from None
    names = class_names(args.data)
    if len(names) == len(result.get("litert_per_class", result.get("micro_per_class", ()))):
        result["class_names"] = list(names)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.file} on {args.data} ({result['samples']} samples):")
        for rt in ("litert", "micro"):
            if f"{rt}_accuracy" in result:
                print(f"  {rt:7s} top-1 {100 * result[f'{rt}_accuracy']:.2f}%")
                if "class_names" in result:  # The labels are known: per class, as a deployer reads them.
                    print("          " + ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in zip(
                        result["class_names"], result[f"{rt}_per_class"]) if acc is not None))
        if "litert_error" in result:
            print(f"  {result['litert_error']}: scored on TensorFlow Lite Micro alone")
        if "agreement" in result:
            print(f"  TFLite Micro vs LiteRT reference kernels: top-1 agreement {100 * result['agreement']:.2f}%, "
                  f"max output difference {result['max_diff_steps']:.2f} quantization steps "
                  f"(allowed {result['max_diff_allowed']:.2f})")
            print(f"  TFLite Micro vs LiteRT optimized kernels: top-1 agreement "
                  f"{100 * result['optimized_agreement']:.2f}%, max output difference "
                  f"{result['optimized_max_diff_steps']:.2f} steps (they round int8 differently)")
    if "max_diff_ok" in result and not result["max_diff_ok"]:
        return _fail(f"TFLite Micro and LiteRT's reference kernels differ by {result['max_diff_steps']:.2f} "
                     f"quantization steps (more than {result['max_diff_allowed']:.2f}): the file computes "
                     "differently on the device")
    return 0


COMMANDS = {"convert": _convert, "inspect": _inspect, "check": _check, "run": _run, "bench": _bench,
            "micro-main": _micro_main}


def _reader_left():
    """Stdout's reader has gone (``pea-tflite inspect FILE | head``): stop quietly, as Unix tools
    do, with stdout pointed at /dev/null so that Python's exit-time flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv=None):
    with console.signals_stop():  # SIGTERM stops as Ctrl-C: child processes ended, temporaries removed.
        try:
            code = _main(argv)
        except BaseException as e:  # Argument parsing and imports included; C code may wrap the stop.
            if console.stop_of(e) is None:
                raise
            code = _fail(*console.stopped(e))
    sys.exit(code)


def _main(argv):
    from pea_keras.errors import UserError

    try:
        parser = build_parser()
    except UserError as e:  # A target plugin that cannot be imported (targets.PLUGINS_VARIABLE).
        return _fail(str(e))
    args = parser.parse_args(argv)
    console.quiet(PROG, args.verbose)
    os.environ["KERAS_BACKEND"] = "tensorflow"  # The converter needs TensorFlow models.

    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # Here, so that a reader who left is seen below, not at exit.
    except BrokenPipeError:
        _reader_left()
        code = 0
    except UserError as e:
        code = _fail(str(e))
    except OSError as e:
        code = _fail(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}")
    return code


if __name__ == "__main__":
    main()
