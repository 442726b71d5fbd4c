"""Keras model -> full-integer TFLite file that is proven ReLU-only and loads on device.

``convert`` strips a PEA model, quantizes it (``converter.py``; QAT first with ``qat.py``),
proves the result ReLU-only and integer-only, load-tests it on LiteRT and TFLite Micro, for an
Ethos-U NPU compiles the proven file with Vela (``vela.py``), and only then writes everything,
atomically. A path is read with ``pea_keras.load_model``.
"""

import dataclasses
import os
import tempfile
import warnings

from pea_keras.errors import TFLiteError, UnfinishedScheduleError, first_line
from pea_keras.files import NotRegularFileError, atomic_write_many, write_error_message, write_target
from pea_keras.saving import load_model, revived_layers
from pea_keras.tflite import converter
from pea_keras.tflite.check import analyze
from pea_keras.tflite.converter import quantize
from pea_keras.tflite.model_info import inspect, totals_lines


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


def vela_path(output_path):
    """Where the Ethos-U file of ``OUT.tflite`` goes: ``OUT_vela.tflite``, Vela's own naming."""
    return os.path.splitext(os.fspath(output_path))[0] + "_vela.tflite"


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def check_outputs(output_path, overwrite=False, c_array_dir=None, ethos_u=False):
    """Refuse, before any work, outputs that cannot be written: an existing file without
    `overwrite`, a missing or unwritable folder, anything but a regular file in the file's place
    (a directory, device node, FIFO or socket, even with `overwrite`). With
    ``ethos_u`` the Vela file and its kit are outputs too (and the kit is the Vela file's)."""
    output_path = os.fspath(output_path)
    files = [output_path, vela_path(output_path)] if ethos_u else [output_path]
    if c_array_dir is not None:
        from pea_keras.tflite.micro_kit import kit_paths

        files += kit_paths(c_array_dir, _stem(files[-1]))
    for path in files:
        try:
            write_target(path)  # A device node, FIFO, socket or directory is never replaced.
        except NotRegularFileError as e:
            raise TFLiteError(str(e)) from None
        if os.path.exists(path) and not overwrite:
            raise TFLiteError(f"{path} exists (pass --overwrite to replace it)")
    folders = [os.path.dirname(os.path.abspath(output_path))]
    if c_array_dir is not None and os.path.isdir(c_array_dir):  # Created at the end when missing.
        folders.append(os.path.abspath(c_array_dir))
    for folder in folders:
        if not os.path.isdir(folder):
            raise TFLiteError(f"{folder}: output folder does not exist")
        try:  # The one reliable test: what the final write will do (os.access ignores mounts and ACLs).
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as e:
            message = write_error_message(e, path=folder, safe="nothing was converted")
            raise TFLiteError(message or f"{folder}: cannot write there ({e.strerror or e})") from None


def check_exportable(model):
    """Refuse, before converting, a model tf_keras cannot export for the converter."""
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
    npu: object = None  # vela.Compiled, for an Ethos-U target
    npu_path: str | None = None
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
        if self.npu is not None:
            lines += self.npu.summary_lines(self.npu_path)
        for p in self.c_array:
            lines.append(f"wrote {p}")
        if self.c_array:
            from pea_keras.tflite.micro_kit import build_line

            lines.append(build_line(_stem(self.npu_path or self.path)))
        return "\n".join(lines)


def convert(model, output_path, calibration, *, io="int8", overwrite=False, force_strip=False,
            qat_epochs=0, qat_data=None, c_array_dir=None, require_runtimes=("litert", "micro"),
            golden_samples=3, class_names=(), ethos_u=None, require_npu=False, trust_code=False,
            allow_gates=False, verbose=False):
    """Strip, (optionally QAT-fine-tune,) quantize, prove ReLU-only, load-test, write.

    Args:
        model: a Keras model, or a model file: without QAT, a file loads, strips and converts in
            one TensorFlow child process (``converter.quantize_file``) and this process never
            imports TensorFlow. ``trust_code`` is ``load_model``'s.
        output_path: the .tflite file; nothing is written unless every step passes, and the
            file appears atomically.
        calibration: inputs (one array, or one per model input) for the int8 ranges, or a
            function of the model's inputs [(name, shape)] that returns them (so a caller with a
            model file can size its images without loading the model).
        io: int8 | uint8 | float input/output tensors (compute is int8 in every case).
        overwrite: replace an existing output file (and C array).
        force_strip: strip PEA layers whose alpha < 1 (the deployed network then differs from
            the trained one).
        qat_epochs, qat_data: quantization-aware fine-tuning on labelled ``(x, y)`` first
            (``qat_data`` may be a function of the inputs too).
        c_array_dir: also write the TFLite Micro kit (``micro_kit``) there, named after the
            output's stem, with ``golden_samples`` calibration samples as its golden inputs and
            ``class_names`` (the label of each output index) as its ``kClassNames``.
        require_runtimes: runtimes that must load and run the file; the TFLite Micro arena is
            always measured.
        ethos_u: a ``vela.Target``: also compile the proven file with Vela into
            ``OUT_vela.tflite``; the kit in ``c_array_dir`` is then the Vela file's. Operators
            Vela leaves on the CPU warn, or fail with ``require_npu``.
        allow_gates: accept ReLU6 channel gates (``check.analyze``), named in the summary.
        verbose: show the converter's log.

    Returns:
        A ``Conversion``.

    Raises:
        TFLiteError: any step fails; nothing was written.
        OSError: the disk refused the file or its C array (full, read-only); no file was changed.
    """
    from pea_keras.tflite import runtimes

    check_outputs(output_path, overwrite, c_array_dir, ethos_u=ethos_u is not None)
    if ethos_u is not None:
        ethos_u.check()
    output_path = os.fspath(output_path)
    if isinstance(model, (str, os.PathLike)) and not qat_epochs:
        data, calibration, n_pea = converter.quantize_file(
            model, calibration if callable(calibration) else lambda inputs: calibration, io=io,
            force_strip=force_strip, trust_code=trust_code, verbose=verbose)
    else:
        if isinstance(model, (str, os.PathLike)):
            model = load_model(model, trust_code=trust_code)
        check_exportable(model)
        import pea_keras

        n_pea = len(pea_keras.pea_layers(model))
        plain = strip_for_deploy(model, force_strip=force_strip)
        inputs = converter.model_inputs(plain)
        calibration = converter.check_calibration(inputs, calibration(inputs) if callable(calibration)
                                                  else calibration)
        if qat_epochs:
            if qat_data is None:
                raise TFLiteError("QAT needs labelled training data (--train_data)")
            from pea_keras.tflite.qat import qat_tflite_bytes

            qat_data = qat_data(inputs) if callable(qat_data) else qat_data
            data = qat_tflite_bytes(plain, qat_data[0], qat_data[1], qat_epochs, calibration, io=io,
                                    verbose=verbose)
        else:
            data = quantize(plain, calibration, io=io, verbose=verbose)
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
        if c_array_dir is not None:
            from pea_keras.tflite import micro_kit

            *golden, arena = micro_kit.golden_run(data, golden_inputs)
        else:
            arena = runtimes.micro_arena_bytes(data)
    except TFLiteError as e:
        if "micro" in require_runtimes or c_array_dir is not None:
            raise
        note = str(e)
    # The file and its C array are written together or not at all: a full disk changes neither
    # (the OSError names the file that did not fit).
    outputs, c_files, npu = {output_path: data}, (), None
    if ethos_u is not None:
        from pea_keras.tflite import vela

        npu = vela.compile_file(data, ethos_u)
        fallback = npu.fallback_message()
        if fallback and require_npu:
            raise TFLiteError(f"{fallback} (--require_npu)")
        if fallback:
            warnings.warn(fallback, stacklevel=2)
        outputs[vela_path(output_path)] = npu.data
    if c_array_dir is not None:
        if npu is not None:
            kit = vela.kit_files(npu, c_array_dir, _stem(vela_path(output_path)), *golden,
                                 os.path.basename(vela_path(output_path)), class_names)
        else:
            kit = micro_kit.kit_files(data, c_array_dir, _stem(output_path), *golden, arena,
                                      os.path.basename(output_path), class_names=class_names)
        os.makedirs(c_array_dir, exist_ok=True)
        outputs.update(kit)
        c_files = tuple(kit)
    try:
        atomic_write_many(outputs, exclusive=not overwrite)
    except FileExistsError as e:  # Another writer created it while this one converted.
        raise TFLiteError(f"{e.filename} appeared while converting (another process wrote it); nothing "
                          "of this conversion was written: pass --overwrite to replace it") from None
    ok = tuple(r for r in ("litert", "micro") if r in require_runtimes or (r == "micro" and arena))
    return Conversion(output_path, len(data), io, info, arena, note, ok, c_files, qat_epochs, n_pea, npu,
                      vela_path(output_path) if npu is not None else None, tuple(proof.notes))
