"""Deploy targets: what ``convert`` makes for each kind of device, and the one registry that
``convert(target=)`` and ``pea-tflite convert --target`` read.

A target says which I/O type its file has, which runtimes must load it, whether the CLI writes
the TFLite Micro kit next to the file, which options it takes, what it checks before any work
(``check``) and what it compiles from the proven int8 file (``compile``; nothing for a file that
deploys as is, as on micro and phone). A compiled file is an output of its own (``outputs``), and
the kit is then the compiled file's. Files a target compiled are recognised by ``compiled_by`` so
that ``pea-tflite inspect``/``check``/``run``/``bench`` say what they are.

Adding a target is one module holding its ``Target`` and one line: the module's name in
``_MODULES`` for the package's own, or, for a plugin, in the ``PEA_TFLITE_TARGETS`` environment
variable (comma-separated module names); the module calls ``register`` when imported. Importing
this module needs neither TensorFlow nor Vela, so the CLI lists the targets while parsing.
"""

import dataclasses
import importlib
import os

from pea_keras.errors import TFLiteError, first_line

# The package's own target modules besides the plain ones here, each registering its targets.
_MODULES = ("pea_keras.tflite.ethos_u",)
PLUGINS_VARIABLE = "PEA_TFLITE_TARGETS"


@dataclasses.dataclass(frozen=True)
class Option:
    """A ``pea-tflite convert`` option that only some targets take (``Target.options``)."""

    flag: str  # --name; its value reaches ``Target.configure(name=...)``
    help: str
    metavar: str | None = None
    switch: bool = False  # a flag without a value (store_true)

    @property
    def dest(self):
        return self.flag.lstrip("-")


@dataclasses.dataclass(frozen=True)
class Target:
    """A plain deploy target: the proven int8 file is what the device runs."""

    name: str
    help: str  # its clause in the help of --target
    io: str = "int8"  # input/output tensors (compute is int8 on every target)
    runtimes: tuple = ("litert", "micro")  # must load and run the file
    kit_next_to_file: bool = True  # the CLI writes the TFLite Micro kit beside OUT.tflite
    options: tuple = ()  # Option records only this target takes
    family: str = ""  # how a message names the targets that share its options ("an Ethos-U")

    def configure(self, **options):
        """This target with the values of its ``options`` (None: not given)."""
        return self

    def check(self):
        """Refuse, before any work, what would fail after it (a missing compiler, bad settings)."""

    def compiled_path(self, output_path):
        """Where the compiled file of ``OUT.tflite`` goes; None for a target without one."""
        return None

    def compile(self, data):
        """The compiled file of the proven int8 ``data``, an object with its bytes as ``data``
        and ``summary_lines(path)``; None when the int8 file deploys as is."""
        return None

    def kit_files(self, data, compiled, directory, stem, golden, source_name, class_names):
        """{path: bytes} of the TFLite Micro kit (``micro_kit``'s files) of the deployed file: the
        int8 ``data``, or the file ``compile`` returned (None: none). ``golden``: (quantized
        inputs, outputs, arena) of TensorFlow Lite Micro's run of the int8 file."""
        from pea_keras.tflite import micro_kit

        deployed = data if compiled is None else compiled.data
        return micro_kit.kit_files(deployed, directory, stem, *golden, source_name, class_names=class_names)

    # A file this target compiled, as pea-tflite inspect, check, run and bench read it.
    json_key = "compiled"  # its facts in ``inspect --json``

    def recognises(self, info):
        """True for a file this target compiled (``inspection.ModelInfo``)."""
        return False

    def describe(self, info, data):
        """One line on what the compiled file is (``inspect``)."""
        return f"compiled for {self.name}"

    def readable(self, violations):
        """The check's violations on the part of the compiled file a check can read."""
        return violations

    def unproven(self, info, readable_verdict):
        """The check's one line on a compiled file it cannot prove whole."""
        return f"compiled for {self.name}: the readable part is {readable_verdict}, the rest cannot be read"

    def refuse_host_run(self, path, info, verb):
        """Raise TFLiteError when this host cannot run the compiled file (``run``, ``bench``)."""


MICRO = Target("micro", "micro (default): int8 I/O, C array next to the file, TFLite Micro load test")
PHONE = Target("phone", "phone: float I/O, LiteRT load test", io="float", runtimes=("litert",),
               kit_next_to_file=False)
_registry = {MICRO.name: MICRO, PHONE.name: PHONE}
_loaded = False


def register(*targets):
    """Offer ``targets`` to ``convert`` and ``pea-tflite convert --target`` (a later one of the
    same name replaces the earlier)."""
    for target in targets:
        if not isinstance(target, Target):
            raise TypeError(f"{target!r} is not a pea_keras.tflite.targets.Target")
        _registry[target.name] = target


def _load():
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _MODULES:
        importlib.import_module(module)
    plugins = [m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(",") if m.strip()]
    for module in plugins:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001 (any failure of foreign code while importing)
            fix = "put it on PYTHONPATH" if isinstance(e, ModuleNotFoundError) else "fix it"
            raise TFLiteError(f"{PLUGINS_VARIABLE}: cannot import the target module {module} ({type(e).__name__}: "
                              f"{first_line(e)}): {fix} or remove it from the variable") from None


def all_targets():
    """Every registered target, in the order registered."""
    _load()
    return tuple(_registry.values())


def names():
    return tuple(t.name for t in all_targets())


def get(target):
    """The target named ``target`` (a ``Target`` is returned as is)."""
    if isinstance(target, Target):
        return target
    _load()
    if target not in _registry:
        raise TFLiteError(f"unknown target '{target}', choose one of {', '.join(_registry)}")
    return _registry[target]


def options():
    """Every target option, once each, in the order the targets declare them."""
    found = {}
    for target in all_targets():
        for option in target.options:
            found.setdefault(option.flag, option)
    return tuple(found.values())


def configured(name, values):
    """The target ``name`` with its options from ``values`` ({dest: value}, None/False: not
    given); an option given that the target does not take is refused in one line. ``convert``
    checks it (``Target.check``)."""
    target = get(name)
    foreign = [o for o in options() if values.get(o.dest) not in (None, False) and o not in target.options]
    if foreign:
        owners = [t for t in all_targets() if foreign[0] in t.options]
        raise TFLiteError(f"{', '.join(o.flag for o in foreign)}: only for {owners[0].family} --target "
                          f"({', '.join(t.name for t in owners)})")
    return target.configure(**{o.dest: values.get(o.dest) for o in target.options})


def compiled_by(info):
    """The target that compiled the file ``info`` describes, or None for a plain TFLite file."""
    return next((t for t in all_targets() if t.recognises(info)), None)
