"""Keras-level tests of NewtonLoss: reductions, weights, serialization, fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn


def _data(rng, n=32, features=5, classes=3):
    x = rng.normal(size=(n, features)).astype("float32")
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    return x, np.eye(classes, dtype="float32")[labels]


def test_call_returns_per_sample_half_squared_distance(rng):
    y = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    t = tf.constant(np.eye(3)[[0, 1, 2, 0]], tf.float32)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    loss = kn.NewtonLoss(ce, damping=0.1)
    per_sample = loss.call(t, y).numpy()
    z = kn.newton_target(ce, t, y, damping=0.1).numpy()
    np.testing.assert_allclose(per_sample, 0.5 * ((z - y.numpy()) ** 2).sum(1), rtol=1e-6)


def test_reductions_and_sample_weight(rng):
    y = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    t = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    per_sample = kn.NewtonLoss("mse", reduction=None)(t, y).numpy()
    assert per_sample.shape == (4,)
    summed = kn.NewtonLoss("mse", reduction="sum")(t, y, sample_weight=weights)
    np.testing.assert_allclose(summed, (per_sample * weights).sum(), rtol=1e-6)
    mean = kn.NewtonLoss("mse")(t, y, sample_weight=weights)
    np.testing.assert_allclose(mean, (per_sample * weights).mean(), rtol=1e-6)


@pytest.mark.parametrize(
    "wrapped",
    [
        "mse",
        keras.losses.CategoricalCrossentropy(from_logits=True),
        keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
    ],
)
def test_get_config_round_trip(wrapped, rng):
    loss = kn.NewtonLoss(wrapped, kn.NewtonStep("fisher", 0.2, solver=kn.newton.Solver(
        indefinite="clip")))
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, kn.NewtonLoss)
    assert restored.get_config() == loss.get_config()
    y = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    t = tf.constant(np.eye(3)[[0, 1, 2, 0]], tf.float32)
    np.testing.assert_allclose(restored(t, y), loss(t, y), rtol=1e-6)


@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_fit_with_jit_compile_trains_and_round_trips_through_keras_file(curvature, rng, tmp_path):
    x, y = _data(rng)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(3)])
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.1), loss=kn.NewtonLoss(ce, curvature=curvature, damping=0.1),
                  metrics=[keras.metrics.CategoricalCrossentropy(from_logits=True)], jit_compile=True)
    history = model.fit(x, y, batch_size=8, epochs=5, verbose=0).history
    cross_entropy = history["categorical_crossentropy"]
    assert np.isfinite(history["loss"]).all()
    assert cross_entropy[-1] < cross_entropy[0]
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, kn.NewtonLoss)
    assert restored.loss.step == kn.NewtonStep(curvature, damping=0.1)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)


def test_mixed_precision_outputs(rng):
    x, y = _data(rng)
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
        model.compile("sgd", loss=kn.NewtonLoss(keras.losses.CategoricalCrossentropy(from_logits=True)),
                      jit_compile=True)
        history = model.fit(x, y, epochs=2, verbose=0).history
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    assert np.isfinite(history["loss"]).all()
    assert all(np.isfinite(w).all() for w in model.get_weights())


def _numpy_cross_entropy_newton_values(logits, labels, damping, curvature):
    """Per-sample ½‖z* - y‖² and Newton steps of softmax CE, in NumPy."""
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    g = q - labels
    hessians = np.stack([np.diag(v) - np.outer(v, v) for v in q])
    eye = np.eye(logits.shape[1])
    if curvature == "elementwise_hessian":
        steps = np.stack([np.linalg.solve(h + damping * eye, v) for h, v in zip(hessians, g)])
    else:
        matrix = hessians.mean(0) if curvature == "hessian" else g.T @ g / len(g)
        steps = np.linalg.solve(matrix + damping * eye, g.T).T
    return 0.5 * (steps**2).sum(1), steps


@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_sample_weights_scale_per_sample_values_not_the_curvature(curvature, rng):
    logits = rng.normal(size=(5, 3))
    labels = np.eye(3)[[0, 2, 1, 1, 0]]
    weights = np.array([1.0, 0.0, 3.5, 0.25, 2.0])
    values, steps = _numpy_cross_entropy_newton_values(logits, labels, 0.1, curvature)
    weighted = values * weights
    expected = {
        None: weighted,
        "sum": weighted.sum(),
        "sum_over_batch_size": weighted.sum() / 5,
        "mean": weighted.sum() / 5,
        "mean_with_sample_weight": weighted.sum() / weights.sum(),
    }
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    y = tf.constant(logits, tf.float64)
    t = tf.constant(labels, tf.float64)
    for reduction, value in expected.items():
        loss = kn.NewtonLoss(ce, curvature=curvature, damping=0.1, reduction=reduction,
                             dtype="float64")
        for sample_weight in (weights, weights[:, None]):
            got = loss(t, y, sample_weight=tf.constant(sample_weight))
            # Unreduced values take the weights' shape ([N] or [N, 1]), as in Keras.
            got = np.reshape(got, np.shape(value))
            np.testing.assert_allclose(got, value, rtol=1e-9, err_msg=str(reduction))
    # Each weight scales its own sample's Newton step.
    with tf.GradientTape() as tape:
        tape.watch(y)
        newton = kn.NewtonLoss(ce, curvature=curvature, damping=0.1, reduction="sum",
                               dtype="float64")
        total = newton(t, y, sample_weight=weights)
    np.testing.assert_allclose(tape.gradient(total, y), weights[:, None] * steps, rtol=1e-8, atol=1e-12)
