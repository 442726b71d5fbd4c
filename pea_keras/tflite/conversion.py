"""Keras model -> full-integer TFLite file that is proven ReLU-only and loads on device.

``convert`` strips a PEA model, quantizes it (``quantization.py``; QAT first with ``qat.py``),
proves the result ReLU-only and integer-only, load-tests it on LiteRT and TFLite Micro, compiles
the proven file for its target where the target has a compiler (``targets.py``: Ethos-U's Vela),
and only then writes everything (``outputs.py``), atomically. A path is read with
``pea_keras.load_model``.
"""

import contextlib
import dataclasses
import os

from pea_keras import files
from pea_keras.errors import TFLiteError, UnfinishedScheduleError, first_line
from pea_keras.saving import revived_layers
from pea_keras.tflite import quantization, targets
from pea_keras.tflite.check import analyze
from pea_keras.tflite.inspection import inspect, totals_lines
from pea_keras.tflite.outputs import Outputs, stem
from pea_keras.tflite.quantization import quantize


def strip_for_deploy(model, force_strip=False):
    """The plain ReLU model to deploy: ``pea_keras.strip``; refuses alpha < 1 unless
    ``force_strip`` (the deployed ReLU network then computes something the trained one did not)."""
    import pea_keras

    try:
        return pea_keras.strip(model, force=force_strip)
    except UnfinishedScheduleError as e:
        raise TFLiteError(f"cannot deploy: {e.fact}. Train until alpha reaches 1, or pass --force_strip to "
                          "deploy the ReLU network anyway (its accuracy will differ).") from None
    except ValueError as e:
        raise TFLiteError(f"cannot strip the PEA layers: {first_line(e)}") from None


def check_exportable(model):
    """Refuse, before converting, a model tf_keras cannot export for the converter, and one whose input
    size is free: the file would hold placeholder 1x1 feature maps, not the network a device runs."""
    for name, shape in quantization.model_inputs(model):
        if None in shape[1:]:
            raise TFLiteError(f"the model input {name} has free dimensions {shape[1:]}: a device runs one "
                              "fixed input size, so build the model with it (keras.applications: "
                              "input_shape=(224, 224, 3); keras.Input((224, 224, 3)))")
    revived = revived_layers(model)
    if revived:  # Trusted: tf_keras saves no layer it revived, and the converter reads a SavedModel.
        raise TFLiteError(f"{revived[0].where} was rebuilt from the TensorFlow graph in the file (its class is "
                          "not registered here) and tf_keras cannot export it for the converter: in Python, "
                          "register its class, load the model and pass it to pea_keras.tflite.convert")


@dataclasses.dataclass
class Conversion:
    """What ``convert`` wrote and measured."""

    path: str
    size_bytes: int
    io: str
    info: object  # inspect.ModelInfo
    arena_bytes: int | None
    arena_note: str = ""
    runtimes_ok: tuple = ()
    c_array: tuple = ()
    qat_epochs: int = 0
    pea_layers_stripped: int = 0
    target: object = None  # targets.Target
    compiled: object = None  # what the target compiled (vela.Compiled for an Ethos-U), or None
    compiled_path: str | None = None
    notes: tuple = ()  # what passed the check although it is no ReLU network op (check.Proof.notes)

    def summary(self):
        info = self.info
        lines = [f"wrote {self.path}: {self.size_bytes} bytes, full-integer int8, io={self.io}"
                 + (f", QAT {self.qat_epochs} epochs" if self.qat_epochs else "")]
        if self.pea_layers_stripped:
            lines.append(f"stripped {self.pea_layers_stripped} PEA layers to ReLU")
        lines.append("ReLU-only check: passed (int8 compute, no non-ReLU activation"
                     + "".join(f"; {note}" for note in self.notes) + ")")
        lines += totals_lines(info, tensor_names=False)
        lines.append(f"TFLite Micro tensor arena: {self.arena_bytes} bytes"
                     if self.arena_bytes else f"TFLite Micro tensor arena: unknown ({self.arena_note})")
        if self.runtimes_ok:
            lines.append("load test passed: " + ", ".join(self.runtimes_ok))
        if self.compiled is not None:
            lines += self.compiled.summary_lines(self.compiled_path)
        for p in self.c_array:
            lines.append(f"wrote {p}")
        if self.c_array:
            from pea_keras.tflite.micro_kit import build_line

            lines.append(build_line(stem(self.compiled_path or self.path)))
        return "\n".join(lines)


def convert(model, output_path, calibration, *, target="micro", io=None, overwrite=False, force_strip=False,
            qat_epochs=0, qat_data=None, c_array_dir=None, require_runtimes=None, golden_samples=3,
            class_names=(), trust_code=False, allow_gates=False, lock=True, verbose=False):
    """Strip, (optionally QAT-fine-tune,) quantize, prove ReLU-only, load-test, compile for the
    target, write.

    Args:
        model: a Keras model, or a model file: a file loads, strips, fine-tunes (QAT) and
            converts in one TensorFlow child process (``quantization.quantize_file``) and this
            process never imports TensorFlow, whichever Keras backend it runs. ``trust_code`` is
            ``load_model``'s.
        output_path: the .tflite file; nothing is written unless every step passes, and the
            file appears atomically.
        calibration: inputs (one array, or one per model input) for the int8 ranges, or a
            function of the model's inputs [(name, shape)] that returns them (so a caller with a
            model file can size its images without loading the model).
        target: a ``targets.Target`` or its name (``targets.names()``: micro, phone, ethos-u...):
            its I/O type and required runtimes are the defaults, and a target that compiles the
            proven file (Ethos-U: Vela, into ``OUT_vela.tflite``) writes that file too; the kit
            in ``c_array_dir`` is then the compiled file's.
        io: int8 | uint8 | float input/output tensors (compute is int8 in every case); None: the
            target's.
        overwrite: replace existing output files.
        force_strip: strip PEA layers whose alpha < 1 (the deployed network then differs from
            the trained one).
        qat_epochs, qat_data: quantization-aware fine-tuning on labelled ``(x, y)`` first
            (``qat_data`` may be a function of the inputs too).
        c_array_dir: also write the TFLite Micro kit (``micro_kit``) there, named after the
            deployed file's stem, with ``golden_samples`` calibration samples as its golden inputs
            and ``class_names`` (the label of each output index) as its ``kClassNames``.
        require_runtimes: runtimes that must load and run the file (None: the target's); the
            TFLite Micro arena is always measured.
        allow_gates: accept ReLU6 channel gates (``check.analyze``), named in the summary.
        lock: hold the output file's lock (``files.lock``) while converting; False where the
            caller holds it.
        verbose: show the converter's log.

    Returns:
        A ``Conversion``.

    Raises:
        TFLiteError: any step fails; nothing was written.
        OSError: the disk refused the file or its C array (full, read-only); no file was changed.
    """
    target = targets.get(target)
    target.check()
    outputs = Outputs.of(output_path, target, c_array_dir).check(overwrite)
    with files.lock(outputs.file, "choose another -o") if lock else contextlib.nullcontext():
        return _convert(model, calibration, target, outputs, io=io or target.io, overwrite=overwrite,
                        force_strip=force_strip, qat_epochs=qat_epochs, qat_data=qat_data,
                        require_runtimes=target.runtimes if require_runtimes is None else require_runtimes,
                        golden_samples=golden_samples, class_names=class_names, trust_code=trust_code,
                        allow_gates=allow_gates, verbose=verbose)


def _quantized(model, calibration, io, force_strip, qat_epochs, qat_data, trust_code, verbose):
    """(int8 TFLite bytes, {input name: calibration array}, PEA layers stripped) of `model`."""
    if isinstance(model, (str, os.PathLike)):
        return quantization.quantize_file(
            model, calibration if callable(calibration) else lambda inputs: calibration, io=io,
            force_strip=force_strip, qat_epochs=qat_epochs,
            qat_data_for=qat_data if callable(qat_data) or qat_data is None else lambda inputs: qat_data,
            trust_code=trust_code, verbose=verbose)
    check_exportable(model)
    import pea_keras

    n_pea = len(pea_keras.pea_layers(model))
    plain = strip_for_deploy(model, force_strip=force_strip)
    inputs = quantization.model_inputs(plain)
    calibration = quantization.check_calibration(inputs, calibration(inputs) if callable(calibration) else calibration)
    if not qat_epochs:
        return quantize(plain, calibration, io=io, verbose=verbose), calibration, n_pea
    if qat_data is None:
        raise TFLiteError("QAT needs labelled training data (--train_data)")
    from pea_keras.tflite.qat import qat_tflite_bytes

    qat_data = qat_data(inputs) if callable(qat_data) else qat_data
    return (qat_tflite_bytes(plain, qat_data[0], qat_data[1], qat_epochs, calibration, io=io, verbose=verbose),
            calibration, n_pea)


def _convert(model, calibration, target, outputs, *, io, overwrite, force_strip, qat_epochs, qat_data,
             require_runtimes, golden_samples, class_names, trust_code, allow_gates, verbose):
    from pea_keras.tflite import micro_kit, runtimes

    data, calibration, n_pea = _quantized(model, calibration, io, force_strip, qat_epochs, qat_data, trust_code,
                                          verbose)
    info = inspect(data)
    proof = analyze(info, int8=True, allow_gates=allow_gates)
    if proof.violations:
        raise TFLiteError("converted file is not ReLU-only: " + "; ".join(str(v) for v in proof.violations))
    if "litert" in require_runtimes:
        runtimes.load_test(data, "litert")
    # One TensorFlow Lite Micro run measures the arena and, for a kit, computes the golden outputs.
    arena, note, golden = None, "", None
    golden_inputs = {name: x[:golden_samples] for name, x in calibration.items()}
    try:
        if outputs.kit_dir is not None:
            *golden, arena = micro_kit.golden_run(data, golden_inputs)
        else:
            arena = runtimes.micro_arena_bytes(data)
    except TFLiteError as e:
        if "micro" in require_runtimes or outputs.kit_dir is not None:
            raise
        note = str(e)
    contents, kit, compiled = {outputs.file: data}, {}, target.compile(data)
    if compiled is not None:
        contents[outputs.compiled] = compiled.data
    if outputs.kit_dir is not None:
        kit = target.kit_files(data, compiled, outputs.kit_dir, stem(outputs.deployed),
                               (*golden, arena), os.path.basename(outputs.deployed), class_names)
        contents.update(kit)
    outputs.write(contents, overwrite)
    ok = tuple(r for r in ("litert", "micro") if r in require_runtimes or (r == "micro" and arena))
    return Conversion(outputs.file, len(data), io, info, arena, note, ok, tuple(kit), qat_epochs, n_pea, target,
                      compiled, outputs.compiled if compiled is not None else None, tuple(proof.notes))
