"""Training modes: how a run turns its starting network into what it trains, moves alpha, and
what it deploys. One `Mode` object per mode; `train.py --mode` takes the registry's names.

    pea        ReLU and g blended by a schedule, then stripped to ReLU
    relu       the plain ReLU baseline
    surrogate  ReLU forward, g's derivative backward (SUGAR)
    novel      g everywhere (alpha = 0): an upper bound, not deployed
    relufy     a trained network's activations handed over to ReLU (with its recipe)

A new mode is one `Mode` object and one line: in `MODES` here, or from another package as an
entry point of the group `pea_keras.modes` (`[project.entry-points."pea_keras.modes"]
name = "module:OBJECT"`), which `train.py --mode name` then accepts. An `Ablation` is a mode
outside the registry (alpha held or learned) that `run.run(config, mode=...)` takes.
"""

import functools
import warnings
from importlib import metadata

from pea_keras import schedules
from pea_keras.errors import SettingError, UsageError, first_line

__all__ = ["Mode", "Ablation", "MODES", "ENTRY_POINTS", "get", "names", "blending", "self_distilling"]


class Mode:
    """One mode. The defaults train like PEA: wrap every ReLU, move alpha 0 -> 1 by --schedule,
    strip to ReLU and deploy; a mode overrides what differs."""

    name = ""
    help = ""  # One clause of --mode's help.
    defaults = {}  # Settings it changes when a user leaves them unset (flags not given).
    blends = True  # Trains PEA blends, so --relu_gradient applies.
    self_distills = False  # --distill self can use its model evaluated with g as the teacher.
    undeployable = ""  # Why it is not stripped to ReLU and exported ("" : it is).
    ends_below_one = False  # alpha ends below 1 on purpose: stripped by force, no "cannot strip" warning.

    def check(self, config):
        """Raises UsageError for settings this mode cannot train with (after the generic checks)."""

    def schedule(self, config, total_steps):
        """The alpha schedule over `total_steps` (None: no PEAScheduler); refuses one that would
        end below 1 unless the mode means it."""
        schedule = schedules.get(config.schedule, total_steps, config.pea_start, config.pea_end)
        last = schedule(total_steps - 1)
        if not self.ends_below_one and last < 1.0:
            how = ("lower --pea_end below 1: at 1, alpha reaches 1 only after the last step" if config.pea_end >= 1
                   else f"lower --pea_end (now {config.pea_end}) or train more steps (now {total_steps})")
            raise UsageError(f"alpha would end at {last:.3f} < 1, so the model could not be stripped to ReLU; "
                             f"{how}")
        return schedule

    def model(self, initial, config):
        """What trains, built from the --arch or --init_from network `initial`."""
        import pea_keras

        return pea_keras.wrap(initial, activation=config.activation, alpha=0.0, relu_gradient=config.relu_gradient)

    def strip(self, model):
        """The deployable ReLU network of the trained `model`."""
        import pea_keras

        return pea_keras.strip(model, force=self.ends_below_one)  # Else raises if any alpha != 1.


class PEA(Mode):
    name = "pea"
    help = "ReLU and g blended by a schedule, then stripped to ReLU"
    self_distills = True


class ReLU(Mode):
    name = "relu"
    help = "plain ReLU baseline"
    blends = False

    def schedule(self, config, total_steps):
        return None

    def model(self, initial, config):
        return initial


class Surrogate(ReLU):
    name = "surrogate"
    help = "ReLU forward and g's derivative backward (SUGAR, no schedule; deploys as ReLU)"

    def model(self, initial, config):
        import pea_keras

        return pea_keras.surrogate(initial, activation=config.activation)


class Novel(Mode):
    name = "novel"
    help = "g everywhere (alpha = 0, an upper bound that cannot be deployed ReLU-only)"
    undeployable = "g everywhere cannot be deployed ReLU-only"
    ends_below_one = True

    def schedule(self, config, total_steps):
        return schedules.Constant(0.0)


class Relufy(Mode):
    # Fine-tunes a trained network for 20 % of a 15-epoch training: alpha reaches 1 at half of it,
    # so half the steps train the ReLU network at a useful learning rate (2e-3, decaying), with
    # g' as the ReLU branch's gradient (SUGAR once alpha is 1); the loaded network teaches; the
    # stripped network's batch-norm statistics are recomputed. Chosen on the validation split
    # by benchmarks/relufy_accuracy.py (docs/RESULTS.md section 8).
    name = "relufy"
    help = ("hand a trained network with other activations (--init_from) over to ReLU in a short fine-tune "
            "(pea_keras.relufy; its recipe sets unset flags: see pea_keras.training.modes)")
    defaults = dict(epochs=3, lr=2e-3, relu_gradient="g", pea_end=0.5, distill="init", bn_reestimate=50,
                    allow_gates=True)

    def check(self, config):
        if not config.init_from:
            raise UsageError("--mode relufy needs --init_from PATH: the trained model whose activations become ReLU")

    def model(self, initial, config):
        import pea_keras

        return pea_keras.relufy(initial, relu_gradient=config.relu_gradient)


class Ablation(Mode):
    """PEA with alpha held by `schedule` (e.g. Constant(0.5)) or learned (`trainable_alpha`, no
    schedule); either way the model ends below alpha 1 and is stripped by force. Reported as pea."""

    name = "pea"
    ends_below_one = True

    def __init__(self, schedule=None, trainable_alpha=False):
        self.held, self.trainable_alpha = schedule, trainable_alpha

    def schedule(self, config, total_steps):
        return None if self.trainable_alpha else self.held

    def model(self, initial, config):
        import pea_keras

        return pea_keras.wrap(initial, activation=config.activation, alpha=0.0, relu_gradient=config.relu_gradient,
                              trainable_alpha=self.trainable_alpha)


MODES = {mode.name: mode for mode in (PEA(), ReLU(), Surrogate(), Novel(), Relufy())}
ENTRY_POINTS = "pea_keras.modes"  # The entry-point group through which other packages add modes.


@functools.cache
def _registry():
    """MODES, then the modes of installed packages' `pea_keras.modes` entry points. A broken one is
    left out with a warning: another package's mistake must not stop the built-in modes."""
    found = dict(MODES)
    for entry in metadata.entry_points(group=ENTRY_POINTS):
        try:
            mode = entry.load()
        except Exception as e:  # noqa: BLE001 (any failure of foreign code while importing)
            problem = f"does not load ({type(e).__name__}: {first_line(e)})"
        else:
            ok = isinstance(mode, Mode) and mode.name == entry.name and entry.name not in MODES
            problem = "" if ok else f"is not a Mode named {entry.name!r} that is not one of {', '.join(MODES)}"
        if problem:
            warnings.warn(f"mode {entry.name} ({entry.value}, entry point group {ENTRY_POINTS}) {problem}: left "
                          "out; fix or uninstall the package that declares it", stacklevel=2)
            continue
        found[entry.name] = mode
    return found


def names():
    """The --mode choices, in the order --help lists them."""
    return tuple(_registry())


def get(name):
    """The mode registered as `name`."""
    try:
        return _registry()[name]
    except KeyError:
        raise SettingError("mode", f"must be one of {', '.join(names())}, got {name!r}") from None


def help_text():
    """--mode's help: every mode's clause."""
    return "; ".join(f"{name}: {mode.help}" for name, mode in _registry().items()) + "."


def _listed(modes):
    return " or ".join([", ".join(modes[:-1]), modes[-1]] if len(modes) > 1 else modes)


def blending():
    """'pea, novel or relufy': the modes that --relu_gradient applies to."""
    return _listed([name for name, mode in _registry().items() if mode.blends])


def self_distilling():
    """The modes --distill self works with."""
    return _listed([name for name, mode in _registry().items() if mode.self_distills])
