"""What a run starts from: a new --arch network or the --init_from model (checked against the
task before anything is written), and what trains it: the model, or a distiller with its teacher."""

import pea_keras
from pea_keras import flavor
from pea_keras.errors import UsageError, UserError


def initial_model(config, task, k, data, train_ds):
    """The network training starts from: a new --arch network, or the --init_from model, checked
    against the task's inputs and classes before anything is written."""
    if not config.init_from:
        return task.build_model(k, config, data)
    try:
        model = pea_keras.load_model(config.init_from)
    except UserError as e:
        raise UsageError(f"--init_from {config.init_from}: {e}") from None
    if flavor.is_tf_keras(model) != (config.keras == "2"):
        raise UsageError(f"--init_from {config.init_from} is a {FLAVOR_NAMES[flavor.is_tf_keras(model)]} model; "
                         f"this run trains {FLAVOR_NAMES[config.keras == '2']}")
    spec = train_ds.element_spec  # What the training pipeline feeds: (images, labels).
    expected = tuple(spec[0].shape[1:])
    got = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    if got is None or any(g not in (None, e) for g, e in zip(got, expected)) or len(got) != len(expected):
        shapes = [tuple(t.shape[1:]) for t in model.inputs]
        raise UsageError(f"--init_from {config.init_from} takes inputs of shape {', '.join(map(str, shapes))}; "
                         f"this task feeds one input of shape {expected}")
    classes = data.num_classes
    if len(model.outputs) != 1 or model.outputs[0].shape[-1] != classes:
        shapes = [tuple(t.shape[1:]) for t in model.outputs]
        raise UsageError(f"--init_from {config.init_from} has outputs of shape {', '.join(map(str, shapes))}; "
                         f"this task needs one output of {classes} logits")
    return model


FLAVOR_NAMES = {True: "tf_keras (--keras 2)", False: "Keras 3 (--keras 3)"}


def trainer(config, model, initial):
    """`model`, or with --distill a distiller that trains it against the teacher (for `init`, the
    network as loaded from --init_from, which training leaves untouched)."""
    if config.distill == "none":
        return model
    from pea_keras import distillation

    teacher = initial if config.distill == "init" else "self"
    if config.distill.startswith("teacher:"):
        path = config.distill[len("teacher:"):]
        try:
            teacher = pea_keras.load_model(path)
        except UserError as e:
            raise UsageError(f"--distill teacher:{path}: {e}") from None
        if flavor.is_tf_keras(teacher) != flavor.is_tf_keras(model):
            raise UsageError(f"--distill teacher:{path} is a {FLAVOR_NAMES[flavor.is_tf_keras(teacher)]} model; "
                             f"this run trains {FLAVOR_NAMES[flavor.is_tf_keras(model)]}")
    try:
        return distillation.distiller(model, teacher, config.distill_temperature, config.distill_weight)
    except ValueError as e:
        raise UsageError(f"--distill {config.distill}: {e}") from None
