"""`flavor.twin_classes`: one convention for the classes that exist in Keras 3 and tf_keras."""
import keras
import tf_keras

from pea_keras import flavor
from pea_keras.training.tasks.segmentation import losses as seg_losses


class _Scaled:
    """A {flavor} constraint scaling weights by `factor`."""

    def __init__(self, factor=2.0):
        self.factor = factor

    def __call__(self, w):
        return w * self.factor

    def get_config(self):
        return {"factor": self.factor}


def test_twins_share_name_registration_and_pick_by_flavor():
    twins = flavor.twin_classes(_Scaled, "constraints.Constraint", "Scaled", package="pea_tests")
    k3, k2 = twins
    assert k3.__name__ == k2.__name__ == "Scaled"
    assert issubclass(k3, keras.constraints.Constraint) and issubclass(k2, tf_keras.constraints.Constraint)
    assert keras.saving.get_registered_name(k3) == "pea_tests>Scaled"
    assert tf_keras.saving.get_registered_name(k2) == "pea_tests>Scaled"
    assert k3.__doc__ == "A Keras 3 constraint scaling weights by `factor`."
    assert k2.__doc__ == "A tf_keras constraint scaling weights by `factor`."
    assert twins.of(keras) is k3 and twins.of(tf_keras) is k2
    assert twins.of(tf_keras.layers.Dense(1)) is k2 and twins.of(keras.layers.Dense(1)) is k3
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(k3(3.0)))
    assert type(restored) is k3 and restored.factor == 3.0


def test_segmentation_twins_follow_the_same_convention():
    for k in (keras, tf_keras):
        loss = seg_losses.segmentation_loss(k=k)
        assert flavor.keras_of(loss) is k and type(loss).__name__ == "IgnoreLabelCrossentropy"
        assert k.saving.get_registered_name(type(loss)) == "pea_keras>IgnoreLabelCrossentropy"


def test_keras_of_accepts_objects_classes_and_modules():
    assert flavor.keras_of(tf_keras) is tf_keras and flavor.keras_of(keras) is keras
    assert flavor.keras_of(tf_keras.layers.ReLU) is tf_keras and flavor.keras_of(keras.layers.ReLU()) is keras
    assert flavor.backend_of(tf_keras.layers.ReLU()) == "tensorflow"
