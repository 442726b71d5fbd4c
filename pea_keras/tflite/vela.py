"""Arm Ethos-U NPUs: compile a proven int8 file with Arm's Vela, and recognise Vela's files.

Vela (``pip install 'pea_keras[npu]'``, the ``ethos-u-vela`` package) turns an int8 ``.tflite``
into ``<stem>_vela.tflite``: the operators the NPU runs become ``CUSTOM:ethos-u`` operators
(command streams for the NPU, registered in TensorFlow Lite Micro with ``AddEthosU()``), the
others stay TFLite operators that run on the CPU. Its performance model estimates cycles,
inference time and memory for one system configuration (clocks, memory bandwidths, which memory
holds what) read from a ``vela.ini`` file; they are estimates, not measurements, and depend on
that configuration, which is why every figure here is printed with the configuration's name.

Vela runs in a child process (``_vela_worker.py``): a crash of its native compiler becomes one
error line. Importing this module needs neither Vela nor TensorFlow, so the CLI can offer the
accelerator names while parsing its arguments.
"""

import configparser
import csv
import dataclasses
import glob
import importlib.util
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from pea_keras.errors import TFLiteError, signal_name
from pea_keras.tflite.inspection import inspect, read_bytes

# Vela 5.2's --accelerator-config choices (``ethosu.vela.architecture_features.Accelerator``;
# a test compares them with the installed Vela's).
ACCELERATORS = (
    "ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256",
    "ethos-u65-512", "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024",
    "ethos-u85-2048",
)
NPU_OP = "CUSTOM:ethos-u"
INSTALL = "pip install 'pea_keras[npu]'"
DEFAULT_CONFIG = "Arm/vela.ini"  # What Vela reads when no --config is given.
VELA_TIMEOUT_S = 900
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_vela_worker.py")
_REFUSED = 3  # _vela_worker.REFUSED
# Memory areas of Vela's summary CSV, in the order they are printed.
_MEMORIES = (("sram", "SRAM"), ("dram", "DRAM"), ("on_chip_flash", "on-chip flash"),
             ("off_chip_flash", "off-chip flash"))


def installed():
    """True if Vela can be imported (looked up without importing it)."""
    try:
        return importlib.util.find_spec("ethosu.vela") is not None
    except ImportError:  # An ``ethosu`` package without ``vela`` inside.
        return False


def require(what):
    if not installed():
        raise TFLiteError(f"{what} needs Arm's Vela compiler (the ethos-u-vela package): {INSTALL}")


def version():
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("ethos-u-vela")
    except PackageNotFoundError:
        return "unknown"


@dataclasses.dataclass(frozen=True)
class Config:
    """An Ethos-U configuration: accelerator, and the system config and memory mode of a Vela
    .ini file (None: Vela's default for the accelerator, from Arm's example file)."""

    accelerator: str
    config_file: str | None = None
    system_config: str | None = None
    memory_mode: str | None = None

    def check(self):
        """Refuse, before any conversion work, settings Vela would refuse after it: an unknown
        accelerator, a config file that cannot be read, a section the file does not have."""
        if self.accelerator not in ACCELERATORS:
            raise TFLiteError(f"unknown Ethos-U accelerator '{self.accelerator}', choose one of "
                              + ", ".join(ACCELERATORS))
        require(f"--target {self.accelerator}")
        if self.config_file is None and (self.system_config or self.memory_mode) is None:
            return
        path = self.config_path()
        parser = configparser.ConfigParser()
        try:
            with open(path) as f:
                parser.read_file(f)
        except (OSError, configparser.Error, UnicodeDecodeError) as e:
            raise TFLiteError(f"--vela_config {self.config_file}: cannot read it "
                              f"({getattr(e, 'strerror', None) or str(e).splitlines()[0]})") from None
        for flag, kind, name in (("--system_config", "System_Config", self.system_config),
                                 ("--memory_mode", "Memory_Mode", self.memory_mode)):
            if name is not None and not parser.has_section(f"{kind}.{name}"):
                found = [s.split(".", 1)[1] for s in parser.sections() if s.startswith(kind + ".")]
                raise TFLiteError(f"{flag} {name}: {self.config_file or DEFAULT_CONFIG} has no [{kind}.{name}]; "
                                  f"it has {', '.join(found) or 'none'}")

    def config_path(self):
        """The .ini file as a path: the user's file, else one of Vela's own (``Arm/vela.ini``)."""
        name = self.config_file or DEFAULT_CONFIG
        if not name.endswith(".ini"):
            raise TFLiteError(f"--vela_config {name}: Vela reads only .ini files")
        if os.path.isfile(name):
            return os.path.abspath(name)  # Vela would look for a relative DIR/FILE.ini in its own folder.
        own = os.path.join(_config_files_folder(), name)
        if os.path.isfile(own):
            return own
        raise TFLiteError(f"--vela_config {name}: no such file (nor one of Vela's own: "
                          + ", ".join(own_config_files()) + ")")

    def vela_args(self):
        args = ["--accelerator-config", self.accelerator]
        if self.config_file is not None or self.system_config or self.memory_mode:
            args += ["--config", self.config_path()]
        if self.system_config:
            args += ["--system-config", self.system_config]
        if self.memory_mode:
            args += ["--memory-mode", self.memory_mode]
        return args


def _config_files_folder():
    spec = importlib.util.find_spec("ethosu.vela")
    return os.path.join(os.path.dirname(list(spec.submodule_search_locations)[0]), "config_files")


def own_config_files():
    """The .ini files that come with Vela, as its --config names them (``Arm/vela.ini``)."""
    folder = _config_files_folder()
    return sorted(os.path.relpath(p, folder) for p in glob.glob(os.path.join(folder, "*", "*.ini")))


@dataclasses.dataclass
class Compiled:
    """What Vela made of one int8 file for one ``Config``: the file, where its operators run,
    and the estimates of Vela's performance model."""

    data: bytes
    config: Config
    system_config: str
    memory_mode: str
    config_name: str  # the .ini file, as the user or Vela named it
    defaulted: bool  # system config and memory mode were Vela's defaults, not the user's
    npu_lowered: int  # Vela's count of the NPU operations it lowered the graph to
    cpu_lowered: int
    cpu_reasons: dict  # CPU operator type -> Vela's reason
    cycles: int
    inference_s: float
    clock_hz: float
    memory_bytes: dict  # area -> bytes used (nonzero areas only)
    arena_bytes: int
    info: object  # inspection.ModelInfo of the Vela file

    @property
    def npu_operators(self):
        return sum(op.type == NPU_OP for op in self.info.operators)

    @property
    def cpu_operators(self):
        return cpu_histogram(self.info)

    @property
    def sram_bytes(self):
        return self.memory_bytes.get("SRAM", 0)

    def fallback_message(self):
        """One line naming the operators left on the CPU and why, or None when all run on the NPU."""
        ops = self.cpu_operators
        if not ops:
            return None
        what = ", ".join(f"{t} x{n}" + (f" ({self.cpu_reasons[t]})" if t in self.cpu_reasons else "")
                         for t, n in ops.items())
        return (f"{self.config.accelerator}: {sum(ops.values())} operator(s) run on the CPU, not the NPU: "
                f"{what}; replace them in the model to run it all on the NPU")

    def summary_lines(self, path):
        memory = ", ".join(f"{area} {_kib(b)}" for area, b in self.memory_bytes.items()) or "none"
        cpu = self.cpu_operators
        placement = f"{self.npu_operators} NPU command stream(s) (CUSTOM:ethos-u), " + (
            "CPU fallback: " + ", ".join(f"{t} x{n}" for t, n in cpu.items()) if cpu else "no CPU operators")
        origin = (f"from {self.config_name}; Vela's default for {self.config.accelerator} where not given: pass "
                  "--vela_config, --system_config and --memory_mode for your board" if self.defaulted
                  else f"from {self.config_name}")
        return [
            f"wrote {path}: {len(self.data)} bytes, Vela {version()} for {self.config.accelerator}",
            f"  placement: {placement} (Vela: {self.npu_lowered} NPU / {self.cpu_lowered} CPU operations)",
            f"  estimated by Vela's performance model (not measured): {self.cycles} cycles = "
            f"{_duration(self.inference_s)} per inference at {self.clock_hz / 1e6:g} MHz; memory used: {memory}",
            f"  system config {self.system_config}, memory mode {self.memory_mode} ({origin})",
            f"  TensorFlow Lite Micro tensor arena: {self.arena_bytes} bytes placed by Vela (NPU scratch and "
            "CPU tensors)",
        ]


def kit_files(compiled, directory, stem, q, outputs, source_name, class_names=()):
    """{path: bytes} of the TensorFlow Lite Micro kit of a Vela file (``micro_kit``'s files): the
    Vela file's bytes, a resolver with ``AddEthosU()`` and its CPU operators, the arena Vela
    placed, and the golden inputs ``q`` with ``outputs``, TFLite Micro's reference kernels' on the
    int8 file Vela compiled (``micro_kit.golden_run``: the host has no NPU to run the Vela file on)."""
    from pea_keras.tflite import micro_kit

    arena = compiled.arena_bytes
    return micro_kit.kit_files(
        compiled.data, directory, stem, q, outputs, arena, source_name,
        arena_comment=[
            f"// Tensor arena: {arena} bytes placed by Vela (the file's OfflineMemoryAllocation: NPU scratch,",
            f"// CPU operators' tensors, input and output), plus a margin of {micro_kit.margin_text()} for",
            "// TensorFlow Lite Micro's own bookkeeping (not measured: the host has no Ethos-U kernel),",
            "// rounded up to 16. main.cc prints the arena used."],
        golden_comment=[
            "// Real samples, quantized, and the outputs TensorFlow Lite Micro's reference kernels compute",
            "// for them on the int8 file Vela compiled: an NPU build that reproduces them bit for bit",
            "// computes what that proven file computes (not checked here: the host has no NPU)."],
        class_names=class_names)


def _duration(seconds):
    return f"{1e3 * seconds:.4g} ms" if seconds >= 1e-3 else f"{1e6 * seconds:.4g} us"


def _kib(n):
    return f"{n / 1024:.2f} KiB"


def cpu_histogram(info):
    """{op type: count} of the operators of a Vela file that run on the CPU."""
    out = {}
    for op in info.operators:
        if op.type != NPU_OP:
            out[op.type] = out.get(op.type, 0) + 1
    return out


def is_vela_file(info):
    """True if the file holds Ethos-U command streams (a file Vela compiled)."""
    return any(op.type == NPU_OP for op in info.operators)


def arena_bytes(data, info=None):
    """Tensor-arena bytes of a Vela file: Vela places every tensor that is not a constant (NPU
    scratch, CPU operators' tensors, inputs, outputs) at an offset of one arena and records the
    offsets in the file's ``OfflineMemoryAllocation`` metadata, which TFLite Micro follows.
    TFLite Micro's own bookkeeping comes on top. None for a file without that metadata."""
    from ai_edge_litert import schema_py_generated as schema

    info = info or inspect(data)
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    entry = next((m for m in model.metadata or [] if m.name == b"OfflineMemoryAllocation"), None)
    if entry is None or model.buffers[entry.buffer].data is None:
        return None
    words = np.frombuffer(bytes(model.buffers[entry.buffer].data), np.int32)
    tensors = info.subgraphs[0][0]
    offsets = words[3:3 + len(tensors)]
    end = 0
    for t, offset in zip(tensors, offsets):
        if offset >= 0:
            end = max(end, int(offset) + _nbytes(t))
    return end


def _nbytes(t):
    size = math.prod(max(int(d), 1) for d in t.shape)
    try:
        return size * np.dtype(t.dtype.lower()).itemsize
    except TypeError:
        return size * 4


def describe(info, data):
    """One line on what a Vela file is and what pea-tflite can know about it."""
    cpu = cpu_histogram(info)
    arena = arena_bytes(data, info)
    npu = len(info.operators) - sum(cpu.values())
    return (f"Ethos-U file compiled by Vela: {npu} CUSTOM:ethos-u operator(s) run NPU command streams "
            "(the layers inside them are not in the file), "
            + (f"{sum(cpu.values())} operator(s) run on the CPU ({', '.join(f'{t} x{n}' for t, n in cpu.items())})"
               if cpu else "no operator runs on the CPU")
            + (f"; tensor arena {arena} bytes placed by Vela" if arena is not None else "")
            + "; TensorFlow Lite Micro registers it with AddEthosU()")


def check_verdict(info, cpu_verdict):
    """The check's one line on a Vela file: what the CPU part is (``cpu_verdict``, the check's
    verdict on the operators that run on the CPU) and why the whole file cannot be proven."""
    cpu = cpu_histogram(info)
    npu = len(info.operators) - sum(cpu.values())
    part = (f"its CPU part ({', '.join(f'{t} x{n}' for t, n in cpu.items())}) is {cpu_verdict}" if cpu
            else "no operator runs on the CPU")
    return (f"Ethos-U file compiled by Vela: {part}, but its {npu} NPU command stream(s) (CUSTOM:ethos-u) "
            "cannot be read, so the file is not proven ReLU-only: check the int8 file Vela compiled "
            "(`pea-tflite convert --target ethos-u...` proves it before compiling)")


def refuse_host_run(path, info, verb):
    """A Vela file runs only where an Ethos-U NPU is: refuse ``run``/``bench`` in one line."""
    if is_vela_file(info):
        raise TFLiteError(f"{path}: Ethos-U file compiled by Vela: its NPU command streams run only on an "
                          f"Ethos-U NPU (TensorFlow Lite Micro with AddEthosU() and Arm's driver), which this machine "
                          f"has not: pea-tflite {verb} the int8 file Vela compiled instead (for the NPU, "
                          "`pea-tflite convert --target ethos-u...` prints Vela's estimates)")


def compile_file(data, config):
    """Compile int8 ``.tflite`` bytes for ``config`` with Vela in a child process; a ``Compiled``.

    Raises TFLiteError with Vela's own message when it refuses (a bad config), and one line
    naming the signal when it crashes.
    """
    config.check()
    data = read_bytes(data)
    with tempfile.TemporaryDirectory(prefix="pea-vela-") as tmp:
        model = os.path.join(tmp, "model.tflite")
        with open(model, "wb") as f:
            f.write(data)
        out = os.path.join(tmp, "out")
        argv = [model, *config.vela_args(), "--output-dir", out]
        try:
            proc = subprocess.run([sys.executable, "-P", _WORKER, *argv], capture_output=True, text=True,
                                  cwd=tmp, timeout=VELA_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TFLiteError(f"Vela did not finish compiling for {config.accelerator} in "
                              f"{VELA_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            raise TFLiteError(_failure(proc, config))
        vela_path = os.path.join(out, "model_vela.tflite")
        summaries = glob.glob(os.path.join(out, "model_summary_*.csv"))
        if not os.path.exists(vela_path) or not summaries:
            raise TFLiteError(f"Vela wrote no output for {config.accelerator}: {_last_line(proc)}")
        with open(vela_path, "rb") as f:
            vela_data = f.read()
        with open(summaries[0], newline="") as f:
            row = next(csv.DictReader(f))
    info = inspect(vela_data)
    arena = arena_bytes(vela_data, info)
    if arena is None:
        raise TFLiteError("Vela's file has no OfflineMemoryAllocation metadata: its tensor arena is unknown")
    counts = {kind: int(n) for kind, n in re.findall(r"^(CPU|NPU) operators = (\d+)", proc.stdout, re.M)}
    reasons = dict(re.findall(r"operator: (\w+), ofm: .*\nReason: (.+)", proc.stdout))
    return Compiled(
        data=vela_data, config=config, system_config=row["system_config"], memory_mode=row["memory_mode"],
        config_name=config.config_file or DEFAULT_CONFIG,
        defaulted=not (config.system_config and config.memory_mode),
        npu_lowered=counts.get("NPU", 0), cpu_lowered=counts.get("CPU", 0), cpu_reasons=reasons,
        cycles=int(float(row["cycles_total"])), inference_s=float(row["inference_time"]),
        clock_hz=float(row["core_clock"]),
        memory_bytes={label: round(1024 * float(row[f"{key}_memory_used"])) for key, label in _MEMORIES
                      if float(row[f"{key}_memory_used"]) > 0},
        arena_bytes=arena, info=info)


def _last_line(proc):
    lines = [line.strip() for line in (proc.stderr or "").splitlines() + (proc.stdout or "").splitlines()
             if line.strip() and not line.startswith("Warning: No ")]
    return lines[-1] if lines else "no message"


def _failure(proc, config):
    lines = [line.strip() for line in (proc.stderr or "").splitlines() if line.strip()]
    refusal = next((line[19:] for line in reversed(lines) if line.startswith("pea-worker: error: ")), None)
    if proc.returncode == _REFUSED and refusal:
        return f"Vela refused to compile for {config.accelerator}: {refusal}"
    if proc.returncode < 0:
        sig = signal_name(proc.returncode)
        return f"Vela crashed ({sig}) compiling for {config.accelerator}: {_last_line(proc)}"
    return f"Vela failed (exit {proc.returncode}) compiling for {config.accelerator}: {_last_line(proc)}"
