"""What a run trains and how it is scored, one task per folder (keras-hub style):

    base            the `Task` interface, the `Splits` it loads and its `Evaluation`
    classification  top-1 on digits, TFDS and image folders; the compact classifiers
    segmentation    mIoU on digit scenes, Cityscapes and folders; Lite R-ASPP and ASPP-lite heads

`get(name)` is the registry; `with_defaults` fills unset flags from the task.
"""

import dataclasses
import functools
import importlib

from pea_keras.errors import SettingError

from .base import Evaluation, Splits, Task

# Task name -> "module:class"; a task loads on first use (segmentation imports both flavors).
__all__ = ["Evaluation", "Splits", "Task", "get", "names", "with_defaults"]

TASKS = {"classification": "classification.task:Classification",
         "segmentation": "segmentation.task:Segmentation"}


def names():
    return sorted(TASKS)


@functools.cache
def get(name):
    """The task registered as `name` (one stateless instance per process)."""
    if name not in TASKS:
        raise SettingError("task", f"must be one of {', '.join(names())}, got {name!r}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()


def with_defaults(config):
    """A copy of the RunConfig `config` whose unset arch, dataset (""), image_size and width (0)
    are its task's defaults; the only place that fills them, so run names and metrics.json agree."""
    task = get(config.task)
    config = dataclasses.replace(config, arch=config.arch or task.default_arch,
                                 dataset=config.dataset or task.default_dataset)
    if not config.image_size:
        config.image_size = task.default_image_size(config.dataset)
    if not config.width:
        config.width = task.default_width(config.arch)
    return config
