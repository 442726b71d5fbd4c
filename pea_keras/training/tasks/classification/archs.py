"""Compact networks for PEA training, built for either Keras flavor.

`build(name, k, ...)` returns a flat Functional model (no nested sub-models, so `pea_keras.wrap`
and `strip` see every activation) that takes float images in [0, 1] and returns class logits.
Networks come from `k.applications` where one exists, always with random init (`weights=None`:
nothing is downloaded). `k` is the Keras module, `keras` or `tf_keras`.

Every ReLU is a ReLU layer or an `Activation("relu")`, which is what PEA replaces. The MobileNetV3
variants are the `minimalistic` ones (no hard-swish, no squeeze-excite) so that the stripped network
is ReLU-only.
"""

from pea_keras.errors import SettingError

MOBILENET_MIN_SIZE = 32


def _input(k, input_shape):
    """Float images in [0, 1] go straight into the first convolution: with random init, the
    BatchNormalization after it absorbs any affine input scaling, and a Rescaling layer would
    only stand in the way of quantization-aware training (tfmot does not quantize it)."""
    return k.Input(shape=input_shape, name="image")


def _application(fn, kwargs):
    def build(k, input_shape, num_classes, width):
        # input_tensor names the input like our own networks; the applications return a model
        # whose inputs are a one-element list, which Keras 3 warns about when called with a
        # tensor, so the same layers are re-assembled with a single input (still flat).
        inputs = _input(k, input_shape)
        model = getattr(k.applications, fn)(
            input_tensor=inputs, weights=None, include_top=True,
            classes=num_classes, classifier_activation=None, **kwargs(width))
        return k.Model(inputs, model.output, name=model.name)
    return build


def _conv_bn_relu(k, x, filters, kernel, strides, name):
    x = k.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                        name=f"{name}_conv")(x)
    x = k.layers.BatchNormalization(name=f"{name}_bn")(x)
    return k.layers.ReLU(name=f"{name}_relu")(x)


def _resnet18(k, input_shape, num_classes, width):
    """ResNet-18 (basic blocks, He et al. 2016). Inputs of 64 px or less get the CIFAR stem
    (3x3 stride 1, no max-pool) so that 32x32 images keep a useful feature map."""
    inputs = x = _input(k, input_shape)
    small = min(input_shape[:2]) <= 64
    widths = [max(8, int(c * width)) for c in (64, 128, 256, 512)]
    if small:
        x = _conv_bn_relu(k, x, widths[0], 3, 1, "stem")
    else:
        x = _conv_bn_relu(k, x, widths[0], 7, 2, "stem")
        x = k.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, filters in enumerate(widths):
        for block in range(2):
            strides = 2 if (stage > 0 and block == 0) else 1
            name = f"stage{stage + 1}_block{block + 1}"
            shortcut = x
            y = _conv_bn_relu(k, x, filters, 3, strides, f"{name}_1")
            y = k.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                name=f"{name}_2_conv")(y)
            y = k.layers.BatchNormalization(name=f"{name}_2_bn")(y)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = k.layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                           name=f"{name}_proj_conv")(shortcut)
                shortcut = k.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
            x = k.layers.Add(name=f"{name}_add")([y, shortcut])
            x = k.layers.ReLU(name=f"{name}_out_relu")(x)
    x = k.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = k.layers.Dense(num_classes, name="logits")(x)
    return k.Model(inputs, outputs, name="resnet18")


def _tiny(k, input_shape, num_classes, width):
    """A microcontroller-sized depthwise-separable CNN (in the spirit of MLPerf Tiny's DS-CNN):
    a few thousand parameters, int8 file of a few kB at width 1."""
    inputs = x = _input(k, input_shape)
    def c(n):
        return max(4, int(n * width))

    x = _conv_bn_relu(k, x, c(16), 3, 2, "stem")
    for i, (filters, strides) in enumerate([(32, 2), (64, 2), (64, 1)]):
        name = f"block{i + 1}"
        x = k.layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                     name=f"{name}_dw")(x)
        x = k.layers.BatchNormalization(name=f"{name}_dw_bn")(x)
        x = k.layers.ReLU(name=f"{name}_dw_relu")(x)
        x = _conv_bn_relu(k, x, c(filters), 1, 1, f"{name}_pw")
    x = k.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = k.layers.Dense(num_classes, name="logits")(x)
    return k.Model(inputs, outputs, name="tiny_cnn")


_MOBILENETS = {
    "mobilenet_v1": _application("MobileNet", lambda w: dict(alpha=w)),
    "mobilenet_v2": _application("MobileNetV2", lambda w: dict(alpha=w)),
    "mobilenet_v3_small": _application(
        "MobileNetV3Small",
        lambda w: dict(alpha=w, minimalistic=True, include_preprocessing=False)),
    "mobilenet_v3_large": _application(
        "MobileNetV3Large",
        lambda w: dict(alpha=w, minimalistic=True, include_preprocessing=False)),
}

ARCHS = {
    **_MOBILENETS,
    "resnet18": _resnet18,
    "resnet50": _application("ResNet50", lambda w: {}),
    "tiny": _tiny,
}

# Width multipliers keras.applications ships architectures for (others raise there).
_ALLOWED_WIDTHS = {
    "mobilenet_v1": (0.25, 0.5, 0.75, 1.0),
    "mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "resnet50": (1.0,),
}


# --width when unset: MobileNetV2 at 0.35 gives a ~620 kB int8 file with a small arena at 32 px,
# which fits a mid-range Cortex-M (1 MB flash, 256 KB RAM); width 1.0 is 2.7 MB (docs/RESULTS.md).
DEFAULT_WIDTHS = {"mobilenet_v2": 0.35}


def default_width(name):
    return DEFAULT_WIDTHS.get(name, 1.0)


def names():
    """Architecture names accepted by `build` and `--arch`."""
    return sorted(ARCHS)


def check(name, input_shape, width=1.0):
    """Raises `SettingError` for settings `build` cannot use (the image side is input_shape[0])."""
    if name not in ARCHS:
        raise SettingError("arch", f"must be one of {', '.join(names())}, got {name!r}")
    allowed = _ALLOWED_WIDTHS.get(name)
    if allowed and width not in allowed:
        raise SettingError("width", f"must be one of {allowed} for {name}, got {width}")
    if (name in _MOBILENETS or name == "resnet50") and min(input_shape[:2]) < MOBILENET_MIN_SIZE:
        raise SettingError("image_size", f"must be >= {MOBILENET_MIN_SIZE} for {name}, got {input_shape[0]}")


def build(name, k, input_shape, num_classes, width=1.0, bn_momentum=0.9):
    """Builds `name` with random weights: float [0, 1] images in, `num_classes` logits out.

    `bn_momentum` replaces every BatchNormalization momentum. keras.applications use 0.999, whose
    moving statistics need thousands of steps to forget their initial values: after a short run
    (digits, 20 epochs) evaluation stays at chance while training accuracy is high.
    """
    check(name, input_shape, width)
    model = ARCHS[name](k, tuple(input_shape), num_classes, width)
    for layer in model.layers:
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = bn_momentum
    return model
