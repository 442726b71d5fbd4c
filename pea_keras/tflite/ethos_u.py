"""The Arm Ethos-U targets, one per accelerator Vela knows: the micro checks on the int8 file,
then Vela (``vela.py``) compiles the proven file into ``OUT_vela.tflite``, whose kit it is.
Operators Vela leaves on the CPU warn, or fail with ``require_npu``."""

import dataclasses
import os
import warnings

from pea_keras.errors import TFLiteError
from pea_keras.tflite import targets, vela

OPTIONS = (
    targets.Option("--vela_config", "Ethos-U targets: Vela configuration file describing your system (default: "
                   "Vela's Arm/vela.ini, generic reference systems)", metavar="FILE.ini"),
    targets.Option("--system_config", "Ethos-U targets: [System_Config.NAME] of the .ini (clocks, bandwidths; "
                   "default: Vela's default for the accelerator)", metavar="NAME"),
    targets.Option("--memory_mode", "Ethos-U targets: [Memory_Mode.NAME] of the .ini (which memory holds the arena "
                   "and its cache; default: Vela's default for the accelerator)", metavar="NAME"),
    targets.Option("--require_npu", "Ethos-U targets: fail, instead of warning, when Vela leaves an operator on "
                   "the CPU", switch=True),
)
_HELP = ("an Ethos-U NPU (" + ", ".join(vela.ACCELERATORS) + "): the micro checks, then Arm's Vela compiles the "
         "proven file into OUT_vela.tflite with its kit and prints its estimates (needs "
         f"{vela.INSTALL})")


@dataclasses.dataclass(frozen=True)
class EthosU(targets.Target):
    """An Ethos-U accelerator (``name``), with the Vela settings of ``vela.Config``."""

    config: vela.Config | None = None  # None: Vela's defaults for the accelerator
    require_npu: bool = False
    json_key = "ethos_u"

    @property
    def vela_config(self):
        return self.config or vela.Config(self.name)

    def configure(self, vela_config=None, system_config=None, memory_mode=None, require_npu=False):
        return dataclasses.replace(self, config=vela.Config(self.name, vela_config, system_config, memory_mode),
                                   require_npu=bool(require_npu))

    def check(self):
        self.vela_config.check()

    def compiled_path(self, output_path):
        """``OUT_vela.tflite``, Vela's own naming."""
        return os.path.splitext(os.fspath(output_path))[0] + "_vela.tflite"

    def compile(self, data):
        compiled = vela.compile_file(data, self.vela_config)
        fallback = compiled.fallback_message()
        if fallback and self.require_npu:
            raise TFLiteError(f"{fallback} (--require_npu)")
        if fallback:
            warnings.warn(fallback, stacklevel=3)
        return compiled

    def kit_files(self, data, compiled, directory, stem, golden, source_name, class_names):
        q, outputs, _ = golden  # Vela placed the arena: TFLite Micro's measure of the int8 file is not it.
        return vela.kit_files(compiled, directory, stem, q, outputs, source_name, class_names)

    def recognises(self, info):
        return vela.is_vela_file(info)

    def describe(self, info, data):
        return vela.describe(info, data)

    def readable(self, violations):
        return [v for v in violations if v.type != vela.NPU_OP]  # The NPU part is a command stream.

    def unproven(self, info, readable_verdict):
        return vela.check_verdict(info, readable_verdict)

    def refuse_host_run(self, path, info, verb):
        vela.refuse_host_run(path, info, verb)


targets.register(*(EthosU(name, _HELP, options=OPTIONS, family="an Ethos-U") for name in vela.ACCELERATORS))
