"""Compact segmentation networks whose every nonlinearity is a ReLU-family layer.

Both architectures put a light head on ``MobileNetV2`` features (``weights=None``: nothing is
downloaded) and return per-pixel logits at the input resolution. They are built so that

* every activation is a ``ReLU`` layer (``max_value=6`` in the backbone) or ``activation="relu"``,
  which is what ``pea_keras.wrap`` looks for, so PEA replaces all of them during training and
  ``pea_keras.strip`` gives back a ReLU-only network;
* every op has an int8 TFLite kernel: upsampling is bilinear ``UpSampling2D``
  (``RESIZE_BILINEAR``), pooling is ``GlobalAveragePooling2D`` (``MEAN``), global context is
  a broadcast ``Add``; no sigmoid (``LOGISTIC``), no hard-swish (``HARD_SWISH``) and no product
  of two activations (``MUL`` of two non-constant tensors, which
  ``pea_keras.tflite.relu_only_violations`` rejects);
* they build in either Keras flavor: pass ``k=keras`` or ``k=tf_keras``.

Models take float images in [0, 1] straight into the first convolution: with random init the
BatchNormalization after it absorbs any affine input scaling, and a ``Rescaling`` layer would only
stand in the way of quantization-aware training (tfmot does not quantize it).
"""

import keras

from pea_keras.errors import SettingError

ARCHS = ("lraspp_mobilenet_v2", "deeplabv3_mobilenet_v2")

# MobileNetV2 taps (same names in keras and tf_keras). "block_5_add" is the last bottleneck
# output at stride 8 (linear, 32*width channels); "block_13_expand_relu" is the expanded
# stride-16 feature (576*width channels, ReLU6) just before the stride-2 depthwise of block 13,
# so the stride-32 blocks are never built into the segmentation model.
_LOW_TAP = "block_5_add"
_HIGH_TAP = "block_13_expand_relu"
_OUTPUT_STRIDE = 16


def check(arch, image_size, width=1.0):
    """Raises `SettingError` for settings ``build_segmentation_model`` cannot use."""
    if arch not in ARCHS:
        raise SettingError("arch", f"must be one of {', '.join(ARCHS)}, got {arch!r}")
    if any(side % _OUTPUT_STRIDE or side < 32 for side in _pair(image_size)):
        raise SettingError("image_size", f"must give sides that are multiples of {_OUTPUT_STRIDE} and at "
                           f"least 32, so that the upsampled logits land exactly on the input grid; got "
                           f"{image_size!r}")


def build_segmentation_model(
    arch,
    num_classes,
    image_size,
    width=1.0,
    k=keras,
    bn_momentum=0.9,
    channels=3,
    head_channels=128,
):
    """Builds a segmentation model ``(N, H, W, channels) in [0, 1] -> (N, H, W, num_classes)`` logits.

    Args:
      arch: one of ``ARCHS``:
        ``"lraspp_mobilenet_v2"``: Lite R-ASPP (Howard et al. 2019, "Searching for MobileNetV3")
        on MobileNetV2 stride-8 and stride-16 features.
        ``"deeplabv3_mobilenet_v2"``: an ASPP-lite head (1x1 branch + image-pooling branch, as in
        DeepLabV3's mobile configuration) on the stride-16 features, upsampled once.
      num_classes: number of output channels (logits, no softmax).
      image_size: int (square) or ``(height, width)``; both must be multiples of 16 and >= 32.
      width: MobileNetV2 ``alpha`` (0.35 for the tiny test models).
      k: ``keras`` or ``tf_keras``; the model is built in that flavor.
      bn_momentum: momentum of every BatchNormalization, backbone included. MobileNetV2's own
        default (0.999) leaves the moving statistics near their initial values for the first few
        thousand steps, which makes evaluation of short from-scratch runs meaningless.
      channels: input channels (1 for the grayscale digit scenes, 3 for photographs).
      head_channels: width of the head's 1x1 convolutions.

    The Lite R-ASPP gate, and why it is additive here. The original head multiplies the
    stride-16 branch by ``sigmoid(conv1x1(global_avg_pool(x)))``. The sigmoid alone would become
    a ``LOGISTIC`` op, which is neither ReLU-family nor touched by PEA. Swapping it for the hard
    sigmoid ``ReLU6(z + 3) / 6`` removes the ``LOGISTIC`` but not the problem: the gate is still
    a product of two activation tensors (one ``MUL`` whose both inputs depend on the image), a
    quadratic nonlinearity that ``pea_keras.tflite.relu_only_violations`` rejects, and that
    would leave the deployed network outside "plain ReLU". So the global context enters
    additively instead: ``ReLU(BN(conv1x1(x)) + conv1x1(global_avg_pool(x)))``, a per-image,
    per-channel bias before the ReLU (the same role as DeepLabV3's image-pooling branch, which
    is concatenated, i.e. also linear). It costs the same and converts to CONV_2D, MEAN and a
    broadcast ADD with the ReLU fused.
    """
    layers = k.layers
    check(arch, image_size, width)
    height, width_px = _pair(image_size)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")

    inputs = layers.Input((height, width_px, channels), name="image")
    backbone = k.applications.MobileNetV2(
        input_tensor=inputs, weights=None, include_top=False, alpha=width
    )
    low = backbone.get_layer(_LOW_TAP).output
    high = backbone.get_layer(_HIGH_TAP).output

    def conv_bn_relu(t, filters, name):
        t = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv")(t)
        t = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(t)
        return layers.ReLU(name=f"{name}_relu")(t)

    if arch == "lraspp_mobilenet_v2":
        feature = layers.Conv2D(head_channels, 1, use_bias=False, name="lraspp_high_conv")(high)
        feature = layers.BatchNormalization(momentum=bn_momentum, name="lraspp_high_bn")(feature)
        context = layers.GlobalAveragePooling2D(keepdims=True, name="lraspp_pool")(high)
        context = layers.Conv2D(
            head_channels, 1, kernel_initializer="zeros", name="lraspp_context_conv"
        )(context)
        feature = layers.Add(name="lraspp_with_context")([feature, context])
        feature = layers.ReLU(name="lraspp_high_relu")(feature)
        feature = layers.UpSampling2D(2, interpolation="bilinear", name="lraspp_up2")(feature)
        logits = layers.Add(name="lraspp_logits_8")(
            [
                layers.Conv2D(num_classes, 1, name="lraspp_high_classifier")(feature),
                layers.Conv2D(num_classes, 1, name="lraspp_low_classifier")(low),
            ]
        )
        logits = layers.UpSampling2D(8, interpolation="bilinear", name="logits_up8")(logits)
    else:
        rows, cols = height // _OUTPUT_STRIDE, width_px // _OUTPUT_STRIDE
        branch = conv_bn_relu(high, head_channels, "aspp_1x1")
        pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(high)
        pooled = conv_bn_relu(pooled, head_channels, "aspp_pool")
        # Bilinear resize of a 1x1 map is a broadcast; in Keras 3 "nearest" UpSampling2D lowers
        # to repeat (SHAPE/TILE/RESHAPE ops) while "bilinear" is one RESIZE_BILINEAR op.
        pooled = layers.UpSampling2D((rows, cols), interpolation="bilinear", name="aspp_pool_up")(
            pooled
        )
        feature = layers.Concatenate(name="aspp_concat")([branch, pooled])
        feature = conv_bn_relu(feature, head_channels, "aspp_project")
        logits = layers.Conv2D(num_classes, 1, name="aspp_classifier")(feature)
        logits = layers.UpSampling2D(
            _OUTPUT_STRIDE, interpolation="bilinear", name="logits_up16"
        )(logits)

    logits = layers.Activation("linear", dtype="float32", name="logits")(logits)
    model = k.Model(inputs, logits, name=f"{arch}_{width:g}")
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    return model


def _pair(image_size):
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)
