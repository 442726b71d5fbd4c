"""Keras model -> full-integer TFLite bytes: the converter steps `convert` and `qat` share.

Both flavors go through a SavedModel (Keras 3: ``model.export``; tf_keras:
``tf.saved_model.save``) and ``TFLiteConverter.from_saved_model``, with
``Optimize.DEFAULT``, ``TFLITE_BUILTINS_INT8`` only (so any op without an int8 kernel fails
loudly instead of staying float) and per-channel weights (the converter default). The
converter runs in a child process (`_convert_worker.py`): a crash (it segfaults on some
calibration data) becomes one error line, and its log lines stay out of the user's terminal
unless `verbose`. The child writes only into this process's temporary folder: a stop (Ctrl-C,
SIGTERM) kills it and removes the folder. A model file converts entirely in that child
(`quantize_file`), so the caller never imports TensorFlow.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

from pea_keras import errors
from pea_keras.data import arrays
from pea_keras.errors import TFLiteError, first_line, signal_name

IO_TYPES = ("int8", "uint8", "float")
_WORKER = "pea_keras.tflite._convert_worker"
CONVERT_TIMEOUT_S = 1800
# The user mistakes a child reports (by class name), raised again here as the same class.
_CHILD_ERRORS = {cls.__name__: cls for cls in (errors.TFLiteError, errors.DataError, errors.ModelFileError,
                                               errors.UntrustedCodeError)}


def child_env(**extra):
    """The environment of a child process that imports this very package, whichever sys.path
    found it here."""
    import pea_keras

    root = os.path.dirname(os.path.dirname(os.path.abspath(pea_keras.__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def model_inputs(model):
    """[(name, shape)] of the model's inputs, batch dimension first (None where free)."""
    return [(x.name.split(":")[0], tuple(None if d is None else int(d) for d in x.shape))
            for x in model.inputs]


def check_calibration(inputs, calibration):
    """{input name: float32 array} of the calibration inputs (one array, or a list in model input
    order, or a dict by input name), each checked against its input in `inputs` (`model_inputs`)."""
    if isinstance(calibration, dict):
        missing = [name for name, _ in inputs if name not in calibration]
        if missing:
            raise TFLiteError(f"calibration data lacks the inputs {', '.join(missing)}")
        calibration = [calibration[name] for name, _ in inputs]
    xs = calibration if isinstance(calibration, (list, tuple)) else [calibration]
    if len(xs) != len(inputs):
        raise TFLiteError(f"calibration data has {len(xs)} arrays for a model with {len(inputs)} inputs")
    return {name: arrays.check_inputs(x, shape, "calibration data" if len(xs) == 1 else f"calibration [{name}]")
            for x, (name, shape) in zip(xs, inputs)}


def export_saved_model(model, directory):
    """A SavedModel of either flavor's model for the converter, traced for batch 1.

    A free batch dimension makes a Keras 3 `Flatten` export as SHAPE, STRIDED_SLICE and PACK
    ops computing the batch at run time, whose scalar int32 tensor TFLite Micro cannot plan
    ("Failed to allocate temp. memory", then a crash); a device runs one sample at a time.
    """
    import tensorflow as tf

    from pea_keras import flavor

    specs = [tf.TensorSpec((1, *shape[1:]), tf.float32, name=name) for name, shape in model_inputs(model)]
    try:
        if flavor.is_tf_keras(model):
            serve = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
            tf.saved_model.save(model, directory, signatures=serve.get_concrete_function(*specs))
        else:
            model.export(directory, format="tf_saved_model", verbose=False,
                         input_signature=[specs if len(specs) > 1 else specs[0]])
    except Exception as e:  # noqa: BLE001
        raise TFLiteError(f"SavedModel export failed: {first_line(e)}") from None


def _check_io(io):
    if io not in IO_TYPES:
        raise TFLiteError(f"unknown io type '{io}', choose from {', '.join(IO_TYPES)}")


def _child_failed(returncode, stderr, loading=False):
    """The error of a converter child that exited with `returncode` (stderr: its text);
    `loading`: it had not finished loading and stripping the model file."""
    if returncode < 0 and loading:
        return errors.ModelFileError(f"loading the model file crashed ({signal_name(returncode)}), before "
                                     "any conversion: code the file runs while loading (--trust_model_code) "
                                     "or a damaged file (rerun with --verbose for the log)")
    if returncode < 0:
        return TFLiteError(f"the TFLite converter crashed ({signal_name(returncode)}); this happens with "
                           "calibration values it cannot represent: check the calibration data (rerun "
                           "with --verbose for the converter's log)")
    lines = [line for line in stderr.splitlines() if line.strip()]
    try:
        reported = json.loads(lines[-1])
        return _CHILD_ERRORS.get(reported["error"], TFLiteError)(reported["message"])
    except (IndexError, ValueError, KeyError, TypeError):
        return TFLiteError(f"the TFLite converter failed: {lines[-1].strip() if lines else 'no message'}")


def _run_child(args, tmp, verbose, between=None, loading=lambda: False):
    """Runs the converter child with `args`; `between(proc)` talks to it while it runs (stdin,
    stdout), `loading()` says whether it was still loading the model. Raises the child's error;
    stderr passes through with `verbose`."""
    # TMPDIR: TensorFlow's own temporaries (autograph's generated files) go where ours go, and go with them.
    # KERAS_BACKEND: the converter needs models on TensorFlow, whichever backend this process runs.
    env = child_env(TF_CPP_MIN_LOG_LEVEL="0" if verbose else "3", TMPDIR=tmp, KERAS_BACKEND="tensorflow")
    with open(os.path.join(tmp, "stderr.txt"), "w+") as err:
        with subprocess.Popen([sys.executable, "-P", "-m", _WORKER, *args], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err) as proc:
            try:
                if between is not None:
                    between(proc)
                proc.communicate(timeout=CONVERT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise TFLiteError(f"the TFLite converter did not finish in {CONVERT_TIMEOUT_S} s") from None
            finally:
                if proc.poll() is None:  # Leaving early (timeout, a mistake in the caller's data, a stop).
                    proc.kill()
                    proc.wait()  # Gone before its temporary folder is removed.
        err.seek(0)
        text = err.read()
    if verbose:
        sys.stderr.write(text)
    if proc.returncode != 0:
        raise _child_failed(proc.returncode, text, loading())


def convert_saved_model(directory, calibration, io="int8", verbose=False):
    """Full-integer TFLite bytes of a SavedModel, converted in a child process.

    `calibration`: {signature input name: float32 array}.
    """
    _check_io(io)
    with tempfile.TemporaryDirectory(prefix="pea-convert-") as tmp:
        calib, out = os.path.join(tmp, "calibration.npz"), os.path.join(tmp, "model.tflite")
        np.savez(calib, **calibration)
        _run_child([directory, calib, io, out], tmp, verbose)
        with open(out, "rb") as f:
            return f.read()


def quantize_file(path, calibration_for, *, io="int8", force_strip=False, qat_epochs=0, qat_data_for=None,
                  trust_code=False, verbose=False):
    """(full-integer TFLite bytes, {input name: calibration array}, PEA layers stripped) of the
    model file `path`, loaded, stripped (``conversion.strip_for_deploy``), QAT-fine-tuned for
    `qat_epochs` (``qat.py``), exported and converted in one child process: the caller never
    imports TensorFlow, whichever Keras backend it runs. `calibration_for(inputs)` gets the
    stripped model's `model_inputs` and returns its calibration data (as `quantize` takes it), and
    `qat_data_for(inputs)` its labelled (x, y); they run while the child exports."""
    _check_io(io)
    found = {}

    def calibrate(proc):
        line = proc.stdout.readline()
        while line and not line.startswith('{"inputs"'):  # What loading printed (trusted code) is shown.
            sys.stdout.write(line)
            line = proc.stdout.readline()
        if not line:  # The child failed before stripping; its error is on stderr.
            return
        facts = found["facts"] = json.loads(line)
        for message in facts["warnings"]:  # Loading and stripping, said here as if done here.
            warnings.warn(message, stacklevel=4)
        inputs = [(name, tuple(shape)) for name, shape in facts["inputs"]]
        try:
            found["calibration"] = check_calibration(inputs, calibration_for(inputs))
            arrays = {"calibration": calib}
            if qat_epochs:
                if qat_data_for is None:
                    raise TFLiteError("QAT needs labelled training data (--train_data)")
                x, y = qat_data_for(inputs)
                np.savez(qat, x=x, y=y)
                arrays["qat"] = qat
        except BaseException:
            tell(proc, "\n")  # Tell the child to stop, then report this error.
            raise
        np.savez(calib, **found["calibration"])
        found["pea_layers"] = facts["pea_layers"]
        tell(proc, json.dumps(arrays) + "\n")

    def tell(proc, line):
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
        except BrokenPipeError:  # The child failed meanwhile: its error is raised once it has exited.
            pass

    with tempfile.TemporaryDirectory(prefix="pea-convert-") as tmp:
        calib, qat, out = (os.path.join(tmp, name) for name in ("calibration.npz", "qat.npz", "model.tflite"))
        settings = json.dumps({"trust_code": trust_code, "force_strip": force_strip, "qat_epochs": qat_epochs,
                               "saved_model": os.path.join(tmp, "saved_model")})
        _run_child(["--file", os.fspath(path), io, out, settings], tmp, verbose, calibrate,
                   loading=lambda: "facts" not in found)
        with open(out, "rb") as f:
            return f.read(), found["calibration"], found["pea_layers"]


def quantize(model, calibration, *, io="int8", verbose=False):
    """Full-integer TFLite bytes of a plain Keras model (either flavor); no ReLU checks.
    Use ``convert`` for the checked, written, load-tested file.

    Args:
        model: a Keras 3 (TensorFlow backend) or tf_keras model without PEA layers.
        calibration: one float32 array, a list in model input order, or {input name: array}.
        io: int8 | uint8 | float input/output tensors.
        verbose: show the converter's log.

    Returns:
        The .tflite flatbuffer as bytes.

    Raises:
        DataError: calibration data that is not float, finite and shaped like the inputs.
        TFLiteError: the export or the conversion failed (a converter crash included).
    """
    calibration = check_calibration(model_inputs(model), calibration)
    with tempfile.TemporaryDirectory(prefix="pea-export-") as tmp:
        export_saved_model(model, tmp)
        return convert_saved_model(tmp, calibration, io, verbose)
