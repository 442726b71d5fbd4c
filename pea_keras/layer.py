"""`PEALayer`: alpha * ReLU(x) + (1 - alpha) * g(x), with alpha a scheduled variable.

The same implementation serves Keras 3 (`PEALayer`) and tf_keras (`TFKerasPEALayer`);
both are named "PEALayer" and registered as "pea_keras>PEALayer", so saved models load
without `custom_objects`, and `isinstance(layer, PEALayer)` holds for either flavor.
On TensorFlow (tf_keras, and Keras 3's TensorFlow backend) the layer uses TF's fused ReLU
gradient ops; on Keras 3's other backends (JAX, PyTorch) the same graph in `keras.ops`.

Phase protocol: a trainer that knows where alpha is going tells each layer with
`layer.enter_phase("novel" | "blend" | "relu" | None)` and then retraces its training
function (`PEAScheduler` does both). In a traced phase the graph has no conditional:
only g while alpha is 0, only the ReLU layer's own graph once alpha is 1.
"""
import warnings

from pea_keras import activations, flavor, numerics

__all__ = ["PEALayer", "TFKerasPEALayer", "is_pea_layer", "relu", "hard_sigmoid", "PHASES"]


def relu(x, max_value=None, threshold=0.0, B=numerics.TF):
    """Keras' ReLU (both flavors compute exactly this): thresholded, optionally capped."""
    if threshold != 0:
        x = x * B.cast(x > threshold, x.dtype)
    elif max_value == 6:
        return B.relu6(x)
    else:
        x = B.relu(x)
    return x if max_value is None else B.cap(x, max_value)


def hard_sigmoid(x, B=numerics.TF):
    """ReLU6(x + 3) / 6: a gate's ReLU branch, the hard sigmoid a ReLU-only network computes with ReLU6."""
    return B.relu6(x + 3.0) * (1.0 / 6.0)


def _branch(B, act, max_value, gate, threshold=0.0, relu_gradient="relu"):
    """(forward(x), backward(dy, x)) of the ReLU branch: relu(x, max_value, threshold), or a gate's hard
    sigmoid; backward is relu'(x), or with relu_gradient "g" the surrogate gradient g'(x) (`_g_gradient`)."""
    if gate:
        return (lambda x: hard_sigmoid(x, B),
                lambda dy, x: B.relu_grad(dy * (1.0 / 6.0), x + 3.0, 6.0))

    def forward(x):
        return relu(x, max_value, threshold, B)

    if relu_gradient == "g":
        return forward, _g_gradient(B, act, max_value)
    return forward, lambda dy, x: B.relu_grad(dy, x, max_value)


def _g_gradient(B, act, max_value):
    """backward(dy, x) = dy * g'(x), the ReLU branch's surrogate gradient (SUGAR, arXiv 2505.22074): it
    flows where g's would, also for x < 0; above a cap (ReLU6) it is the cap's, 0."""

    def backward(dy, x):
        g_prime = act.g_prime(x)
        if max_value is not None:
            g_prime = g_prime * B.cast(x < max_value, x.dtype)
        return dy * g_prime

    return backward


def _select(B, alpha, relu_branch, g_branch, blend, phase=None):
    """Only the ReLU branch at alpha == 1, only g at alpha == 0.

    With a known `phase` the branch is chosen while tracing and the graph has no
    conditional at all: a plain ReLU network at alpha == 1. Otherwise a conditional on
    alpha chooses at run time, which is always right but costs time and memory per layer.
    """
    if phase is not None:
        return {"relu": relu_branch, "novel": g_branch, "blend": blend}[phase]()
    return B.cond(alpha >= 1.0, relu_branch, lambda: B.cond(alpha <= 0.0, g_branch, blend))


def _ensemble(B, x, alpha, max_value, act, phase=None, gate=False, threshold=0.0, relu_gradient="relu"):
    """The ensemble as one op whose gradient is dy * (alpha * relu'(x) + (1 - alpha) * g'(x)), relu'
    the ReLU branch's backward (`_branch`: with relu_gradient "g", g' zeroed above the cap).

    Autodiff of the plain formula keeps both branch outputs, g's intermediates and the
    products for the backward pass, and runs a dozen elementwise ops. This keeps only x, and
    the blend's forward and backward are each one fused loop (`_blend`), which recomputes g's
    intermediates instead of storing them. Alpha is an input (JAX must see every traced value
    it closes over); its gradient is 0 because the scheduled alpha is not trained.
    """
    forward, backward = _blend(B, act, max_value, gate, threshold, relu_gradient)
    relu_forward, relu_backward = _branch(B, act, max_value, gate, threshold, relu_gradient)

    @B.custom_gradient
    def ensemble(x, alpha):
        y = _select(B, alpha, lambda: relu_forward(x), lambda: act.g(x), lambda: forward(x, alpha), phase)

        def grad(*args, upstream=None):
            dy = args[-1] if upstream is None else upstream
            dx = _select(B, alpha, lambda: relu_backward(dy, x), lambda: dy * act.g_prime(x),
                         lambda: backward(dy, x, alpha), phase)
            return dx, B.zeros_like(alpha)

        return y, grad

    return ensemble(x, alpha)


def _blend(B, act, max_value, gate=False, threshold=0.0, relu_gradient="relu"):
    """(forward(x, alpha), backward(dy, x, alpha)) of the blend, each compiled into one loop
    (`numerics` `fused`): one pass over memory each way, as a ReLU makes, where op by op
    SiLU's blend makes about a dozen. One pair per activation, ReLU branch and its gradient, shared
    by every layer."""
    key = (B.name, act.name, max_value, gate, threshold, relu_gradient)
    if key not in _BLENDS:
        relu_forward, relu_backward = _branch(B, act, max_value, gate, threshold, relu_gradient)

        def forward(x, alpha):
            return alpha * relu_forward(x) + (1.0 - alpha) * act.g(x)

        def backward(dy, x, alpha):
            return relu_backward(alpha * dy, x) + ((1.0 - alpha) * dy) * act.g_prime(x)

        _BLENDS[key] = B.fused(forward), B.fused(backward)
    return _BLENDS[key]


_BLENDS = {}


def _surrogate(B, x, relu_fn, max_value, act):
    """ReLU forward, g' backward (`_g_gradient`): the network computes a plain ReLU while its
    gradient is g's. Keeps only x; g' is computed in the backward pass."""
    backward = _g_gradient(B, act, max_value)

    @B.custom_gradient
    def surrogate(x):
        def grad(*args, upstream=None):
            return backward(args[-1] if upstream is None else upstream, x)

        return relu_fn(x), grad

    return surrogate(x)


PHASES = ("novel", "blend", "relu")
RELU_GRADIENTS = ("relu", "g")  # The ReLU branch's gradient: its own, or g' (the surrogate's).


def check_relu_gradient(value):
    """`value` if it names a ReLU branch gradient; a ValueError naming the choices otherwise."""
    if value not in RELU_GRADIENTS:
        raise ValueError(f"relu_gradient must be one of {', '.join(map(repr, RELU_GRADIENTS))}, got {value!r}.")
    return value


class _PEAMeta(type):
    """Makes `isinstance(layer, PEALayer)` true for the PEA layers of both flavors."""

    def __instancecheck__(cls, obj):
        if cls.__dict__.get("_matches_every_flavor"):
            return isinstance(obj, _PEAMixin)
        return super().__instancecheck__(obj)

    def __subclasscheck__(cls, sub):
        if cls.__dict__.get("_matches_every_flavor"):
            return isinstance(sub, type) and issubclass(sub, _PEAMixin)
        return super().__subclasscheck__(sub)


class _PEAMixin(metaclass=_PEAMeta):
    """Progressive ensemble of ReLU and a novel activation `g` ({flavor}).

    Args:
        activation: name from `pea_keras.activations.names()` or a callable, the `g`.
        max_value, threshold: the ReLU branch's configuration (ReLU6: max_value=6).
        alpha: initial ReLU weight; `PEAScheduler` moves it during training.
        trainable_alpha: ablation, learn alpha (clipped to [0, 1]) instead of scheduling it.
        surrogate: ReLU forward and g' backward (`pea_keras.surrogate`); alpha stays 1.
        relu_gradient: the ReLU branch's gradient, "relu" (its own) or "g": g'(x), 0 above max_value, the
            surrogate's. With "g" the layer blends forward as ever and its gradient is
            dy * (alpha * g'(x) [x < max_value] + (1 - alpha) * g'(x)): g's at alpha 0, the surrogate's at 1.
        origin: what the layer replaced; set by `wrap` and `relufy`, used by `strip`.
        gate: a gate (squeeze-excite's sigmoid): the ReLU branch is the hard sigmoid ReLU6(x + 3) / 6,
            what a ReLU-only network gates with (`relufy`); max_value and threshold stay unset.

    At alpha == 1 only the ReLU branch is computed, at alpha == 0 only `g`.
    """

    def __init__(self, activation="silu", max_value=None, threshold=0.0, alpha=0.0,
                 trainable_alpha=False, surrogate=False, origin=None, gate=False, relu_gradient="relu", **kwargs):
        super().__init__(**kwargs)
        self._B = numerics.of_layer(self)
        self._act = activations.get(activation, self._B)
        self.activation = self._act.name if self._act.name is not None else activation
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
        if max_value is not None and max_value <= 0:
            raise ValueError(f"max_value must be positive or None, got {max_value}.")
        self.max_value = None if max_value is None else float(max_value)
        self.threshold = float(threshold)
        self.initial_alpha = alpha
        self.trainable_alpha = bool(trainable_alpha)
        self.surrogate = bool(surrogate)
        if self.surrogate and (self._act.g_prime is None or alpha != 1.0 or self.trainable_alpha):
            raise ValueError("A surrogate layer needs a registered activation (its closed-form g' is the "
                             f"gradient; got {activation!r}) and alpha 1 (its forward pass is ReLU).")
        self.relu_gradient = check_relu_gradient(relu_gradient)
        if relu_gradient == "g" and (self._act.g_prime is None or self.trainable_alpha):
            raise ValueError("relu_gradient='g' needs a registered activation (its closed-form g' is the "
                             f"gradient; got {activation!r}) and a scheduled alpha (trainable_alpha=False).")
        self.gate = bool(gate)
        if self.gate and (self.max_value is not None or self.threshold or self.surrogate or relu_gradient != "relu"):
            raise ValueError("A gate's ReLU branch is ReLU6(x + 3) / 6: it takes no max_value, threshold, "
                             "surrogate or relu_gradient.")
        # What this layer replaced, so `strip` can restore it exactly.
        self.origin = dict(origin) if origin else None
        self._phase = None
        self._alpha_driven = False  # Set by set_alpha / enter_phase: something moves alpha.
        self._warned_unscheduled = False
        self.supports_masking = True

    @property
    def phase(self):
        """The phase training graphs are traced for (see `enter_phase`); None: chosen from alpha."""
        return self._phase

    def enter_phase(self, phase):
        """Trace later training graphs for `phase`: "novel" (g only), "blend", "relu" (the ReLU
        layer's own graph) or None (a run-time choice from alpha, always right but slower).

        The phase applies to graphs traced after this call: retrace the training function
        (`model.make_train_function(force=True)`) so the next step uses it. The caller keeps
        alpha consistent with the phase (alpha == 0 for "novel", 1 for "relu"); inference
        (training=False) always chooses from alpha.
        """
        if phase is not None and phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)} or None, got {phase!r}.")
        self._phase = phase
        self._alpha_driven = True

    def build(self, input_shape):
        clip = (lambda a: self._B.clip(a, 0.0, 1.0)) if self.trainable_alpha else None
        self.alpha = self.add_weight(
            name="alpha", shape=(), dtype="float32", trainable=self.trainable_alpha,
            initializer=flavor.keras_of(self).initializers.Constant(self.initial_alpha), constraint=clip)
        super().build(input_shape)

    def set_alpha(self, value):
        """Move alpha (a training loop does this every step; see `pea_keras.set_alpha`)."""
        self.alpha.assign(float(value))
        self._alpha_driven = True

    @property
    def alpha_value(self):
        """alpha as a Python float (reads the variable; any backend)."""
        return float(self.alpha.numpy())

    def relu(self, x):
        return hard_sigmoid(x, self._B) if self.gate else relu(x, self.max_value, self.threshold, self._B)

    def call(self, inputs, training=None):
        phase = self._phase if training else None
        if training and phase is None and self._alpha_stays_put():
            self._warned_unscheduled = True  # Once per layer; Python's filter shows one per process.
            warnings.warn("Training a PEA model without pea_keras.PEAScheduler: alpha stays where it is "
                          "(0 = novel activation only) and the model will not end as a ReLU network. "
                          "Add callbacks=[pea_keras.PEAScheduler()] to fit(), or call "
                          "pea_keras.set_alpha(model, alpha) in a custom training loop.", stacklevel=2)
        x, B, g = inputs, self._B, self._act.g
        if self.surrogate:
            return _surrogate(B, x, self.relu, self.max_value, self._act) if training else self.relu(x)
        alpha = B.to_tensor(self.alpha, x.dtype)
        if self.trainable_alpha:
            alpha = B.clip(alpha, 0.0, 1.0)
            return alpha * self.relu(x) + (1.0 - alpha) * g(x)
        hybrid = self.relu_gradient == "g"
        if phase == "relu":  # Exactly the ReLU layer's graph, gradient included (or the surrogate's).
            return _surrogate(B, x, self.relu, self.max_value, self._act) if hybrid else self.relu(x)
        if phase == "novel":
            return g(x)
        if self._act.g_prime is None or (self.threshold != 0 and not hybrid):  # No closed-form gradient.
            return _select(B, alpha, lambda: self.relu(x), lambda: g(x),
                           lambda: alpha * self.relu(x) + (1.0 - alpha) * g(x), phase)
        return _ensemble(B, x, alpha, self.max_value, self._act, phase, self.gate, self.threshold,
                         self.relu_gradient)

    def _alpha_stays_put(self):
        """True when a training-mode trace means alpha will not move: nothing (PEAScheduler,
        set_alpha, enter_phase) has ever driven it, alpha is not learned, and the trace is not
        tf_keras writing a SavedModel (which traces training=True without training)."""
        return not (self._warned_unscheduled or self._alpha_driven or self.trainable_alpha or self.surrogate
                    or flavor.in_saved_model_trace(self))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        activation = self.activation
        if not isinstance(activation, str):
            activation = flavor.keras_of(self).saving.serialize_keras_object(activation)
        return {**super().get_config(), "activation": activation, "max_value": self.max_value,
                "threshold": self.threshold, "alpha": self.initial_alpha,
                "trainable_alpha": self.trainable_alpha, "surrogate": self.surrogate, "origin": self.origin,
                "gate": self.gate, "relu_gradient": self.relu_gradient}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("activation"), dict):
            config["activation"] = flavor.keras_of(cls).saving.deserialize_keras_object(config["activation"])
        return cls(**config)


PEALayer, TFKerasPEALayer = flavor.twin_classes(_PEAMixin, "layers.Layer", "PEALayer")
PEALayer._matches_every_flavor = True  # isinstance(x, PEALayer) for both flavors' layers.


def is_pea_layer(layer):
    """True for a PEALayer of either flavor (the same as `isinstance(layer, PEALayer)`)."""
    return isinstance(layer, _PEAMixin)


def layer_class(obj):
    """The PEALayer class of a Keras flavor (`keras` or `tf_keras`, or an object of it)."""
    return flavor.Twins(PEALayer, TFKerasPEALayer).of(obj)
