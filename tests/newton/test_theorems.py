"""Numerical checks of Theorems 2 and 3 of Petersen et al. (NeurIPS 2024)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton._autodiff import autodiff_derivatives, per_sample_loss_fn


def _logistic(y_true, y_pred):  # convex, non-quadratic, m = 1
    return tf.reduce_mean(tf.nn.softplus(y_pred) - y_true * y_pred, axis=-1)


def _mlp(x, params):
    w1, b1, w2, b2 = params
    return tf.matmul(tf.tanh(tf.matmul(x, w1) + b1), w2) + b2


def test_theorem_2_gradient_step_equals_unit_output_step_plus_regression(rng):
    """Gradient of ℓ(f(x;θ)) equals that of ½‖z* - f(x;θ)‖² with z* = y - g."""
    x = tf.constant(rng.normal(size=(6, 3)), tf.float64)
    targets = tf.constant(np.eye(4)[rng.integers(0, 4, 6)], tf.float64)
    params = [tf.Variable(rng.normal(size=s)) for s in [(3, 5), (5,), (5, 4), (4,)]]
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(ce.call(targets, _mlp(x, params)))
    direct = tape.gradient(loss, params)

    outputs = _mlp(x, params)
    gradients, _ = autodiff_derivatives(per_sample_loss_fn(ce), targets, outputs, "fisher")
    unit_step_target = outputs - gradients  # (3a) with a unit step and M = I
    with tf.GradientTape() as tape:
        regression = tf.reduce_mean(
            0.5 * tf.reduce_sum(tf.square(unit_step_target - _mlp(x, params)), -1)
        )
    two_stage = tape.gradient(regression, params)
    for a, b in zip(direct, two_stage):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _classification_problem(rng):
    x = tf.constant(rng.normal(size=(6, 3)), tf.float64)
    targets = tf.constant(np.eye(4)[rng.integers(0, 4, 6)], tf.float64)
    params = [tf.Variable(rng.normal(size=s)) for s in [(3, 5), (5,), (5, 4), (4,)]]
    return x, targets, params


def _direct_gradient(loss, targets, x, params):
    """Gradient of the batch mean of ℓ(f(x;θ)): ordinary training."""
    with tf.GradientTape() as tape:
        value = tf.reduce_mean(loss.call(targets, _mlp(x, params)))
    return [g.numpy() for g in tape.gradient(value, params)]


def _two_stage_gradient(x, params, target):
    """Gradient of (3b): the batch mean of ½‖z* - f(x;θ)‖² with z* fixed."""
    with tf.GradientTape() as tape:
        regression = tf.reduce_mean(
            0.5 * tf.reduce_sum(tf.square(target - _mlp(x, params)), -1)
        )
    return tape.gradient(regression, params)


@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_theorem_2_through_newton_target_in_the_gradient_descent_limit(curvature, rng):
    """(3a) by ``kn.newton_target`` + (3b) is a gradient step on ℓ∘f as λ → ∞.

    ``z* = y - (M + λI)^{-1} g = y - g/λ + O(‖M‖/λ²)``: the output-space step
    of Theorem 2 with step size ``1/λ``. So λ times the (3b) gradient equals
    the gradient of ``ℓ(f(x;θ))`` up to ``O(‖M‖/λ)`` relative to its size,
    here ~1e-6.
    """
    x, targets, params = _classification_problem(rng)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    direct = _direct_gradient(ce, targets, x, params)
    damping = 1e6
    target = kn.newton_target(ce, targets, _mlp(x, params), curvature=curvature, damping=damping)
    two_stage = _two_stage_gradient(x, params, target)
    for a, b in zip(direct, two_stage):
        scale = np.abs(a).max()
        np.testing.assert_allclose(damping * b.numpy(), a, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_newton_target_step_backpropagates_the_damped_newton_step(curvature, rng):
    """The Newton analogue of Theorem 2, exactly, at moderate damping.

    (3a) with ``kn.newton_target`` + (3b) gives the parameter gradient
    ``J_θᵀ (M + λI)^{-1} g / N``: backpropagation of ℓ∘f with each output
    gradient ``g_i`` replaced by its Newton step (reference in NumPy).
    """
    x, targets, params = _classification_problem(rng)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    damping = 0.05
    outputs = _mlp(x, params)
    target = kn.newton_target(ce, targets, outputs, curvature=curvature, damping=damping)
    two_stage = _two_stage_gradient(x, params, target)

    logits = outputs.numpy()
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    g = q - targets.numpy()
    hessians = np.stack([np.diag(v) - np.outer(v, v) for v in q])
    eye = np.eye(4)
    if curvature == "elementwise_hessian":
        steps = np.stack([np.linalg.solve(h + damping * eye, v) for h, v in zip(hessians, g)])
    else:
        matrix = hessians.mean(0) if curvature == "hessian" else g.T @ g / len(g)
        steps = np.linalg.solve(matrix + damping * eye, g.T).T
    with tf.GradientTape() as tape:
        network_outputs = _mlp(x, params)
    expected = tape.gradient(network_outputs, params, output_gradients=steps / len(g))
    for a, b in zip(two_stage, expected):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # The Newton step is not the gradient step: the identity is not vacuous.
    direct = _direct_gradient(ce, targets, x, params)
    assert max(np.abs(a - b).max() for a, b in zip(two_stage, direct)) > 1e-2


@pytest.mark.parametrize("curvature", ["elementwise_hessian", "hessian"])
def test_theorem_3_newton_step_equivalence_for_scalar_outputs(curvature, rng):
    """m = 1: a Newton step on ℓ(f(x;θ)) equals (3a) + a Newton step on (3b).

    With a linear model and as many samples as parameters (the interpolation
    regime of the theorem) the element-wise Hessian variant is exact; the
    empirical-Hessian variant equals Newton's method with the batch-mean
    curvature ``h̄ Σ x xᵀ``.
    """
    d = 4
    x = tf.constant(rng.normal(size=(d, d)), tf.float64)
    labels = tf.constant(rng.integers(0, 2, size=(d, 1)), tf.float64)
    theta = tf.Variable(rng.normal(size=(d, 1)))

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_mean(_logistic(labels, tf.matmul(x, theta)))
        gradient = inner.gradient(loss, theta)
    hessian = tf.reshape(outer.jacobian(gradient, theta), [d, d])
    if curvature == "hessian":
        logits = tf.matmul(x, theta)
        s = tf.sigmoid(logits)
        mean_h = tf.reduce_mean(s * (1 - s))
        hessian = mean_h * tf.matmul(x, x, transpose_a=True) / d
    direct_step = tf.linalg.solve(hessian, gradient)

    outputs = tf.matmul(x, theta)
    target = kn.newton_target(_logistic, labels, outputs, curvature=curvature, damping=0.0)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            regression = tf.reduce_mean(0.5 * tf.square(target - tf.matmul(x, theta)))
        gradient = inner.gradient(regression, theta)
    regression_hessian = tf.reshape(outer.jacobian(gradient, theta), [d, d])
    two_stage_step = tf.linalg.solve(regression_hessian, gradient)
    np.testing.assert_allclose(two_stage_step, direct_step, rtol=1e-7, atol=1e-10)
