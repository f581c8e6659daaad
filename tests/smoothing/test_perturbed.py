"""Perturbed optimizers and Fenchel-Young estimates (Berthet et al., 2020).

With Gumbel noise the perturbed one-hot argmax is exactly softmax(θ/σ)
(Gumbel-max trick), so its mean and Jacobian have closed forms. Tolerance:
replicate means within 5 standard errors (see tests/test_smoothing.py).
"""

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.shortest_path import shortest_path
from keras_newton.smoothing import (
    fenchel_young_estimate,
    get_solver,
    one_hot_argmax,
    perturbed_jacobian,
    perturbed_optimizer,
    register_solver,
)

K = 5.0


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_one_hot_argmax_breaks_ties_to_the_first_index(mode):
    out = run_in_mode(mode, one_hot_argmax, tf.constant([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]))
    np.testing.assert_array_equal(out, [[0, 1, 0], [1, 0, 0]])


def test_gumbel_perturbed_argmax_approaches_softmax(mode):
    theta = np.array([0.3, -0.5, 1.0, 0.0])
    sigma, replicates, samples = 0.8, 500, 40
    thetas = tf.constant(np.tile(theta, (replicates, 1)))
    fn = lambda t: perturbed_optimizer(one_hot_argmax, t, num_samples=samples, sigma=sigma,
                                       noise="gumbel", seed=[3, 1])
    out = run_in_mode(mode, fn, thetas)
    p = softmax(theta / sigma)
    se = np.sqrt(p * (1 - p) / (replicates * samples))
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-12)
    assert np.all(np.abs(out.mean(0) - p) < K * se), (out.mean(0), p)


def test_gumbel_jacobian_approaches_softmax_jacobian():
    theta = np.array([0.3, -0.5, 1.0])
    sigma, replicates = 0.8, 1000
    thetas = tf.constant(np.tile(theta, (replicates, 1)))
    _, jacobian = perturbed_jacobian(one_hot_argmax, thetas, num_samples=20, sigma=sigma,
                                     noise="gumbel", seed=[7, 7])
    p = softmax(theta / sigma)
    expected = (np.diag(p) - np.outer(p, p)) / sigma
    j = jacobian.numpy()
    se = j.std(0) / np.sqrt(replicates)
    np.testing.assert_allclose(j, np.swapaxes(j, 1, 2), atol=1e-12)
    assert np.all(np.abs(j.mean(0) - expected) < K * se), (j.mean(0), expected)


def test_backprop_is_the_jacobian_estimate(mode, rng):
    theta = tf.constant(rng.normal(size=(3, 5)))
    v = tf.constant(rng.normal(size=(3, 5)))

    def run(theta):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            out = perturbed_optimizer(one_hot_argmax, theta, num_samples=7, sigma=0.5, seed=[1, 1])
            total = tf.reduce_sum(v * out)
        mean, jacobian = perturbed_jacobian(one_hot_argmax, theta, num_samples=7, sigma=0.5,
                                            seed=[1, 1], symmetrize=False)
        return out, tape.gradient(total, theta), mean, jacobian

    out, gradient, mean, jacobian = run_in_mode(mode, run, theta)
    np.testing.assert_allclose(out, mean, rtol=1e-12)
    np.testing.assert_allclose(gradient, np.einsum("nk,nkm->nm", v.numpy(), jacobian), rtol=1e-9, atol=1e-12)


def test_fenchel_young_estimate_of_argmax(mode, rng):
    theta = tf.constant(rng.normal(size=(4, 3)))
    y = tf.constant(np.eye(3)[[0, 1, 2, 0]])

    def run(theta):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            est = fenchel_young_estimate(one_hot_argmax, theta, y, sense="max", num_samples=6,
                                         sigma=0.5, seed=[2, 2], hessian=True)
            total = tf.reduce_sum(est.value)
        mean, jacobian = perturbed_jacobian(one_hot_argmax, theta, num_samples=6, sigma=0.5, seed=[2, 2])
        return est.value, est.gradient, est.hessian, tape.gradient(total, theta), mean, jacobian

    value, gradient, hessian, backprop, mean, jacobian = run_in_mode(mode, run, theta)
    np.testing.assert_allclose(gradient, mean - y.numpy(), rtol=1e-12)
    np.testing.assert_allclose(backprop, gradient, rtol=1e-12)
    np.testing.assert_allclose(hessian, jacobian, rtol=1e-12)
    # F_ε(θ) = E[max_w ⟨θ+σZ, w⟩] ≥ ⟨θ, y⟩ in expectation; every sample's
    # maximum exceeds ⟨θ+σZ, y⟩, so only the noise term can make it negative.
    assert value.shape == (4,) and np.all(value > -2.0)


def test_fenchel_young_of_shortest_path_has_minimizer_sign(rng):
    # For a minimizing solver the loss is ⟨θ, y⟩ - E[min_w ⟨θ+σZ, w⟩]; its
    # gradient y - ŷ_ε and PSD Hessian estimate -J (J = Jacobian of ŷ_ε).
    costs = tf.constant(rng.uniform(0.2, 1.5, size=(3, 4, 4)))
    truth = shortest_path(tf.constant(rng.uniform(0.2, 1.5, size=(3, 4, 4))))
    est = fenchel_young_estimate(shortest_path, costs, truth, sense="min", num_samples=50,
                                 sigma=0.3, seed=[5, 6], hessian=True)
    mean, jacobian = perturbed_jacobian(shortest_path, costs, num_samples=50, sigma=0.3, seed=[5, 6])
    np.testing.assert_allclose(est.gradient, tf.reshape(truth - mean, [3, 16]), rtol=1e-12)
    np.testing.assert_allclose(est.hessian, -jacobian.numpy(), rtol=1e-12)
    # Exact solutions of the true costs have zero FY loss up to noise: loss
    # at the truth's own costs is smaller than at unrelated costs.
    own = fenchel_young_estimate(shortest_path, costs, shortest_path(costs), sense="min",
                                 num_samples=50, sigma=0.3, seed=[5, 6]).value
    assert np.all(own.numpy() < est.value.numpy() + 1e-9)


def test_solver_registry():
    assert get_solver("shortest_path").fn is shortest_path
    assert get_solver(shortest_path).sense == "min"
    assert get_solver("argmax").sense == "max"
    with pytest.raises(ValueError, match="registered"):
        get_solver(lambda t: t)
    with pytest.raises(ValueError, match="Unknown solver"):
        get_solver("dijkstra")
    with pytest.raises(ValueError, match="sense"):
        register_solver("x", one_hot_argmax, "maximize")
    with pytest.raises(ValueError, match="sense"):
        fenchel_young_estimate(one_hot_argmax, tf.ones([2, 3]), tf.ones([2, 3]), sense="up", seed=[0, 0])
    with pytest.raises(ValueError, match="theta"):
        perturbed_optimizer(one_hot_argmax, tf.ones([3]), seed=[0, 0])
