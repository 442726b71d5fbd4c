"""Distillation in fit: the loss it adds, the student trained in place, the moving-average teacher."""
import warnings

import numpy as np
import pytest
import tensorflow as tf

import pea_keras
from pea_keras import distillation


def dense_net(k, seed=0):
    k.utils.set_random_seed(seed)
    inputs = k.Input((6,))
    hidden = k.layers.ReLU()(k.layers.Dense(8)(inputs))
    return k.Model(inputs, k.layers.Dense(3)(hidden))


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 6)).astype("float32"), rng.integers(0, 3, 32)


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_kd_loss_is_hintons_t_squared_kl():
    rng = np.random.default_rng(1)
    t, s = rng.normal(size=(5, 4)).astype("float32"), rng.normal(size=(5, 4)).astype("float32")
    p, q = softmax(t / 3.0), softmax(s / 3.0)
    expected = 9.0 * np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
    assert float(distillation.kd_loss(tf.constant(t), tf.constant(s), 3.0)) == pytest.approx(expected, rel=1e-5)
    assert float(distillation.kd_loss(tf.constant(t), tf.constant(t), 3.0)) == pytest.approx(0.0, abs=1e-6)


def compiled(k, trainer):
    trainer.compile(k.optimizers.SGD(0.1), k.losses.SparseCategoricalCrossentropy(from_logits=True))
    return trainer


@pytest.mark.parametrize("weight", [0.0, 0.6, 1.0])
def test_trainer_loss_mixes_labels_and_teacher_by_weight(k, weight):
    x, y = data()
    student, teacher = pea_keras.wrap(dense_net(k, 0), alpha=1.0), dense_net(k, 1)
    trainer = compiled(k, distillation.distiller(student, teacher, temperature=2.0, weight=weight))
    logits = student(x).numpy()
    labels = np.mean(-np.log(softmax(logits)[np.arange(len(y)), y]))
    p, q = softmax(teacher(x).numpy() / 2.0), softmax(logits / 2.0)
    kd = 4.0 * np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
    minimized = trainer.compute_loss(x=tf.constant(x), y=tf.constant(y), y_pred=student(x))  # fit's gradient's.
    assert float(minimized) == pytest.approx((1 - weight) * labels + weight * kd, rel=1e-4)


def test_fit_trains_the_student_in_place_and_only_it(k):
    x, y = data()
    student, teacher = pea_keras.wrap(dense_net(k, 0)), pea_keras.replace_relu(dense_net(k, 1), "silu")
    before_student, before_teacher = student.get_weights(), teacher.get_weights()
    trainer = compiled(k, distillation.distiller(student, teacher))
    trainer.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[pea_keras.PEAScheduler()])
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before_student, student.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(before_teacher, teacher.get_weights()))
    assert pea_keras.pea_layers(trainer) == pea_keras.pea_layers(student)  # The scheduler sees the student.
    assert pea_keras.pea_layers(student)[0].alpha_value == 1.0


def test_self_teacher_is_the_moving_average_evaluated_with_g(k):
    x, y = data()
    student = pea_keras.wrap(dense_net(k, 0))
    trainer = compiled(k, distillation.distiller(student, "self", decay=0.75))
    teacher = trainer.teacher
    start = student.get_weights()
    assert [layer.alpha_value for layer in pea_keras.pea_layers(teacher)] == [0.0]
    trainer.fit(x[:8], y[:8], epochs=1, batch_size=8, verbose=0,
                callbacks=[pea_keras.PEAScheduler(lambda step: 0.5), *trainer.teacher_updates])
    alphas = {id(layer.alpha) for layer in pea_keras.pea_layers(teacher)}
    for t, s0, s1, w in zip(teacher.get_weights(), start, student.get_weights(), teacher.weights):
        if id(w) not in alphas:
            np.testing.assert_allclose(t, 0.75 * s0 + 0.25 * s1, rtol=1e-5, atol=1e-6)
    assert [layer.alpha_value for layer in pea_keras.pea_layers(teacher)] == [0.0]


def test_bad_settings_are_refused(k):
    student = pea_keras.wrap(dense_net(k))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        distillation.distiller(student, "self", temperature=0)
    with pytest.raises(ValueError, match=r"weight must be in \[0, 1\]"):
        distillation.distiller(student, "self", weight=1.5)
    with pytest.raises(ValueError, match="teacher must be a model or 'self'"):
        distillation.distiller(student, "teacher")
    with pytest.raises(ValueError, match="needs a PEA model"):
        distillation.distiller(dense_net(k), "self")
    inputs = k.Input((6,))
    with pytest.raises(ValueError, match=r"teacher's output \(None, 5\) does not match the student's \(None, 3\)"):
        distillation.distiller(student, k.Model(inputs, k.layers.Dense(5)(inputs)))
    other = k.Input((7,))  # Refused before training, not at the first step.
    with pytest.raises(ValueError, match=r"teacher's input \(None, 7\) does not match the student's \(None, 6\): "
                                         "distillation feeds both the same batch"):
        distillation.distiller(student, k.Model(other, k.layers.Dense(3)(other)))


def test_a_teacher_that_outputs_probabilities_is_warned_about(k):
    student, inputs = dense_net(k), k.Input((6,))
    hidden = k.layers.Dense(3)(inputs)
    for outputs, why in [
            (k.layers.Dense(3, activation="softmax", name="probs")(inputs), "its output layer probs ends in softmax"),
            (k.layers.Activation("sigmoid", name="probs")(hidden), "its output layer probs ends in sigmoid"),
            (k.layers.Lambda(lambda z: k.activations.softmax(z))(hidden),  # Known by its numbers only.
             "on a batch they are non-negative and sum to 1")]:
        with pytest.warns(UserWarning) as caught:
            distillation.distiller(student, k.Model(inputs, outputs))
        assert [str(w.message) for w in caught] == [
            f"the teacher's outputs look like probabilities ({why}), not the logits distillation softens; give a "
            "teacher without its final softmax or sigmoid"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        distillation.distiller(student, k.Model(inputs, hidden))  # Logits: no word.
