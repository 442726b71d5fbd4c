"""Schedules for the ensemble coefficient: `schedule(step) -> alpha in [0, 1]`.

alpha weighs the ReLU branch. The schedule must reach 1 before training ends so the
network settles on pure ReLU and the novel branch can be removed. Schedules are plain
Python callables evaluated once per training batch by `PEAScheduler`; `get_config` and
`from_config` (or `serialize`/`deserialize`) round-trip them.
"""
import math

__all__ = ["Schedule", "Linear", "Cosine", "Step", "Constant", "default", "get", "names", "serialize",
           "deserialize"]

DEFAULT_START = 0.0
DEFAULT_END = 0.75


def _check_unit(name, value):
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}.")
    return value


class Schedule:
    """Base class: a callable from the optimizer step to alpha."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()


class _Ramp(Schedule):
    """alpha = 0 before `begin_step`, rises to 1 at `end_step`, stays 1 after."""

    def __init__(self, begin_step, end_step):
        begin_step, end_step = int(begin_step), int(end_step)
        if begin_step < 0:
            raise ValueError(f"begin_step must be >= 0, got {begin_step}.")
        if end_step <= begin_step:
            raise ValueError(f"end_step ({end_step}) must be greater than begin_step ({begin_step}).")
        self.begin_step, self.end_step = begin_step, end_step

    @classmethod
    def over(cls, total_steps, start=DEFAULT_START, end=DEFAULT_END):
        """Ramp from `start` to `end`, both fractions of `total_steps`."""
        start, end = _check_unit("start", start), _check_unit("end", end)
        if end <= start:
            raise ValueError(f"end ({end}) must be greater than start ({start}).")
        total_steps = int(total_steps)
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
        begin = int(round(start * total_steps))
        return cls(begin, max(begin + 1, int(round(end * total_steps))))

    def _progress(self, step):
        return min(max((float(step) - self.begin_step) / (self.end_step - self.begin_step), 0.0), 1.0)

    def get_config(self):
        return {"begin_step": self.begin_step, "end_step": self.end_step}


class Linear(_Ramp):
    """Linear ramp of alpha from 0 to 1."""

    def __call__(self, step):
        return self._progress(step)


class Cosine(_Ramp):
    """Half-cosine ramp of alpha from 0 to 1: slow at both ends, the PEA default."""

    def __call__(self, step):
        return 0.5 * (1.0 - math.cos(math.pi * self._progress(step)))


class Step(Schedule):
    """Piecewise constant: `values[i]` until `boundaries[i]`, then the last value."""

    def __init__(self, boundaries, values):
        boundaries = [int(b) for b in boundaries]
        values = [_check_unit("every value", v) for v in values]
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"Step needs len(values) == len(boundaries) + 1, got {len(values)} values "
                             f"for {len(boundaries)} boundaries.")
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])) or any(b < 0 for b in boundaries):
            raise ValueError(f"boundaries must be non-negative and strictly increasing, got {boundaries}.")
        self.boundaries, self.values = boundaries, values

    @classmethod
    def over(cls, total_steps, start=DEFAULT_START, end=DEFAULT_END, levels=4):
        """`levels` evenly spaced plateaus from 0 to 1, the last one reached at `end`."""
        start, end = _check_unit("start", start), _check_unit("end", end)
        if end <= start or levels < 2:
            raise ValueError(f"Step.over needs start < end and levels >= 2, got {start}, {end}, {levels}.")
        fractions = [start + (end - start) * k / (levels - 1) for k in range(1, levels)]
        return cls([int(round(f * int(total_steps))) for f in fractions],
                   [k / (levels - 1) for k in range(levels)])

    def __call__(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step < boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


class Constant(Schedule):
    """A fixed ensemble (ablation); only `Constant(1.0)` ends strippable."""

    def __init__(self, value):
        self.value = _check_unit("value", value)

    @classmethod
    def over(cls, total_steps, value=1.0):
        del total_steps  # The same at every step.
        return cls(value)

    def __call__(self, step):
        return self.value

    def get_config(self):
        return {"value": self.value}


_CLASSES = {c.__name__: c for c in (Linear, Cosine, Step, Constant)}


def names():
    """The schedules by name, as train.py's --schedule takes them."""
    return tuple(name.lower() for name in _CLASSES)


def get(name, total_steps, start=DEFAULT_START, end=DEFAULT_END):
    """The schedule `name` over `total_steps`, from 0 at `start` to 1 at `end` (fractions of
    training); "constant" is alpha = 1 throughout."""
    cls = {n.lower(): c for n, c in _CLASSES.items()}.get(name)
    if cls is None:
        raise ValueError(f"Unknown schedule {name!r}; valid: {', '.join(names())}.")
    return cls.over(total_steps) if cls is Constant else cls.over(total_steps, start, end)


def default(total_steps):
    """The PEA default: cosine from 0 at step 0 to 1 at 75 % of training, then pure ReLU."""
    return Cosine.over(total_steps, DEFAULT_START, DEFAULT_END)


def serialize(schedule):
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    name = config.get("class_name")
    if name not in _CLASSES:
        raise ValueError(f"Unknown schedule {name!r}; valid: {', '.join(_CLASSES)}.")
    return _CLASSES[name].from_config(config["config"])
