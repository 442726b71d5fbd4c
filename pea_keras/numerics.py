"""The few tensor primitives PEA's formulas use, on TensorFlow (`TF`) and on `keras.ops` (`OPS`).

Activations and the PEA layer are written once against these names; `TF` serves tf_keras and
Keras 3 on TensorFlow (and keeps TensorFlow's fused ReLU gradient ops), `OPS` every Keras 3
backend. Each is built on first use, so importing this module loads no framework.
"""
import functools
import math
import types

__all__ = ["TF", "OPS", "of_layer"]

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _tf():
    import tensorflow as tf

    def fused(fn):
        """`fn` compiled by XLA into one loop over its tensors. Op by op, TensorFlow makes a pass
        over memory for every elementwise op, and memory is what an activation's time goes to.
        XLA compiles each input shape once; where TensorFlow has no XLA, `fn` runs op by op."""
        return tf.function(fn, jit_compile=True, reduce_retracing=True, autograph=False) if _xla(tf) else fn

    def relu_grad(dy, x, max_value):
        """dy * relu'(x) in the one fused op ReLU and ReLU6 use for their own gradient."""
        if max_value is None:
            return tf.raw_ops.ReluGrad(gradients=dy, features=x)
        if max_value == 6:
            return tf.raw_ops.Relu6Grad(gradients=dy, features=x)
        return dy * tf.cast((x > 0) & (x < max_value), x.dtype)

    return types.SimpleNamespace(
        name="tensorflow", sigmoid=tf.sigmoid, tanh=tf.tanh, erf=tf.math.erf, exp=tf.exp,
        softplus=tf.math.softplus, relu=tf.nn.relu, relu6=tf.nn.relu6, elu=tf.nn.elu, selu=tf.nn.selu,
        where=tf.where, minimum=tf.minimum, ones_like=tf.ones_like, zeros_like=tf.zeros_like,
        cast=tf.cast, logical_and=tf.logical_and, cond=tf.cond, custom_gradient=tf.custom_gradient,
        clip=lambda x, low, high: tf.clip_by_value(x, tf.cast(low, x.dtype), tf.cast(high, x.dtype)),
        cap=lambda x, high: tf.clip_by_value(x, tf.zeros((), x.dtype), tf.cast(high, x.dtype)),
        to_tensor=lambda v, dtype: tf.cast(tf.convert_to_tensor(v), dtype),
        sigmoid_grad=lambda s, dy: tf.raw_ops.SigmoidGrad(y=s, dy=dy),  # dy * s * (1 - s), one op.
        relu_grad=relu_grad, fused=fused, softmax=tf.nn.softmax, log_softmax=tf.nn.log_softmax, sum=tf.reduce_sum,
        mean=tf.reduce_mean, stop_gradient=tf.stop_gradient)


def _ops():
    from pea_keras.flavor import ops

    def relu_grad(dy, x, max_value):
        inside = x > 0 if max_value is None else ops.logical_and(x > 0, x < max_value)
        return dy * ops.cast(inside, dy.dtype)

    return types.SimpleNamespace(
        name="keras.ops", sigmoid=ops.sigmoid, tanh=ops.tanh, erf=ops.erf, exp=ops.exp,
        softplus=ops.softplus, relu=ops.relu, relu6=ops.relu6, where=ops.where, minimum=ops.minimum,
        ones_like=ops.ones_like, zeros_like=ops.zeros_like, cast=ops.cast, logical_and=ops.logical_and,
        cond=ops.cond,  # lax.cond under JAX, a Python branch under PyTorch.
        # Its gradient function is called as grad(upstream) on TensorFlow and JAX, and as
        # grad(*inputs, upstream=...) on PyTorch.
        custom_gradient=ops.custom_gradient,
        clip=ops.clip, cap=lambda x, high: ops.minimum(x, ops.cast(high, x.dtype)),
        to_tensor=lambda v, dtype: ops.cast(v, dtype),
        elu=lambda x: ops.where(x > 0, x, ops.exp(ops.minimum(x, 0.0)) - 1.0),
        selu=lambda x: _SELU_SCALE * ops.where(x > 0, x, _SELU_ALPHA * (ops.exp(ops.minimum(x, 0.0)) - 1.0)),
        sigmoid_grad=lambda s, dy: dy * s * (1.0 - s), relu_grad=relu_grad, softmax=ops.softmax,
        fused=lambda fn: fn,  # JAX compiles the whole step with XLA already; PyTorch runs op by op.
        log_softmax=ops.log_softmax, sum=ops.sum, mean=ops.mean, stop_gradient=ops.stop_gradient)


@functools.cache
def _xla(tf):
    """Whether this TensorFlow compiles with XLA (every official build does; checked once)."""
    with tf.init_scope():
        try:
            tf.function(lambda v: v + 1.0, jit_compile=True, autograph=False)(tf.zeros(()))
        except (tf.errors.OpError, NotImplementedError, ValueError):
            return False
    return True


class _Lazy:
    def __init__(self, build):
        self._build, self._namespace = build, None

    def __getattr__(self, name):
        if self._namespace is None:
            self._namespace = self._build()
        return getattr(self._namespace, name)


TF, OPS = _Lazy(_tf), _Lazy(_ops)
SELU = (_SELU_ALPHA, _SELU_SCALE)
SQRT_2, INV_SQRT_2PI, TANH_C = math.sqrt(2.0), 1.0 / math.sqrt(2.0 * math.pi), math.sqrt(2.0 / math.pi)


def of_layer(layer):
    """The namespace a layer computes with: TensorFlow's ops wherever it runs on TensorFlow."""
    from pea_keras import flavor

    return TF if flavor.runs_on_tensorflow(layer) else OPS
