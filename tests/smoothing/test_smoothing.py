"""Stochastic smoothing: noise scores, Lemma 4 estimators, convergence, seeds.

Statistical tolerance: estimators are checked on batches of independent
replicates (the same point repeated R times, each row with its own noise);
the replicate mean must lie within 5 standard errors (std over rows / √R) of
the closed-form smoothed derivative, a bound an unbiased estimator violates
with probability < 1e-6 per entry (Gaussian approximation).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.smoothing import (
    NOISES,
    sample_noise,
    smoothed_function,
    smoothed_jacobian,
    smoothed_loss_derivatives,
)
from keras_newton.smoothing._seeding import make_seed_generator, next_seed

K_STANDARD_ERRORS = 5.0

# ν = -log μ of the standard densities, and its first two derivatives.
SCORES = {
    "normal": (lambda z: z, lambda z: np.ones_like(z)),
    "logistic": (lambda z: np.tanh(z / 2), lambda z: 0.5 / np.cosh(z / 2) ** 2),
    "cauchy": (lambda z: 2 * z / (1 + z**2), lambda z: 2 * (1 - z**2) / (1 + z**2) ** 2),
    "gumbel": (lambda z: 1 - np.exp(-z), lambda z: np.exp(-z)),
}


@pytest.mark.parametrize("noise", NOISES)
def test_noise_scores_match_closed_forms(mode, noise):
    z, score, curvature = run_in_mode(
        mode, lambda: sample_noise(noise, [64, 3], seed=[3, 4], dtype=tf.float64)
    )
    first, second = SCORES[noise]
    np.testing.assert_allclose(score, first(z), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(curvature, second(z), rtol=1e-10, atol=1e-12)


def test_noise_follows_the_distribution():
    # Sample moments / quantiles of the standard distributions.
    z = {n: sample_noise(n, [40000], seed=[0, 7], dtype=tf.float64).z.numpy() for n in NOISES}
    se = 1 / np.sqrt(40000)
    assert abs(z["normal"].mean()) < 5 * se and abs(z["normal"].std() - 1) < 5 * se
    assert abs(z["logistic"].std() - np.pi / np.sqrt(3)) < 5 * 2 * se
    assert abs(z["gumbel"].mean() - np.euler_gamma) < 5 * 1.3 * se
    assert abs(np.mean(np.abs(z["cauchy"]) < 1) - 0.5) < 5 * 0.5 * se


def _quadratic(rng, m=3):
    a = rng.normal(size=(m, m))
    a = a @ a.T + np.eye(m)
    b = rng.normal(size=m)
    return a, b


def _reference(fn, y, z, sigma, noise):
    """NumPy Lemma 4 estimates from the noise draws z [S, N, m]."""
    first, second = SCORES[noise]
    delta = fn(y[None] + sigma * z) - fn(y[None])          # [S, N]
    score = first(z)
    gradient = (delta[..., None] * score).mean(0) / sigma
    outer = np.einsum("sn,snm,snk->snmk", delta, score, score)
    diagonal = delta[..., None] * second(z)
    hessian = (outer - np.einsum("snm,mk->snmk", diagonal, np.eye(z.shape[-1]))).mean(0) / sigma**2
    return gradient, hessian


@pytest.mark.parametrize("noise", ["normal", "logistic"])
def test_estimators_match_numpy_reference(mode, noise, rng):
    a, b = _quadratic(rng)
    y = rng.normal(size=(2, 3))
    sigma, samples, seed = 0.7, 5, [5, 9]

    def run(y):
        fn = lambda v: 0.5 * tf.einsum("...i,ij,...j->...", v, tf.constant(a), v) + tf.reduce_sum(
            v * tf.constant(b), -1)
        est = smoothed_loss_derivatives(fn, y, sigma=sigma, num_samples=samples, seed=seed,
                                        noise=noise, hessian=True)
        z = sample_noise(noise, [samples, 2, 3], seed, tf.float64).z
        return est.value, est.gradient, est.hessian, z

    value, gradient, hessian, z = run_in_mode(mode, run, tf.constant(y))
    np_fn = lambda v: 0.5 * np.einsum("...i,ij,...j->...", v, a, v) + v @ b
    ref_gradient, ref_hessian = _reference(np_fn, y, z, sigma, noise)
    np.testing.assert_allclose(value, np_fn(y[None] + sigma * z).mean(0), rtol=1e-10)
    np.testing.assert_allclose(gradient, ref_gradient, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hessian, ref_hessian, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hessian, np.swapaxes(hessian, 1, 2), atol=1e-12)


def _replicate_errors(estimates, truth):
    """Replicate mean, its standard error and the RMS error of single rows."""
    mean = estimates.mean(0)
    se = estimates.std(0) / np.sqrt(estimates.shape[0])
    rms = np.sqrt(((estimates - truth) ** 2).mean())
    return mean, se, rms


@pytest.mark.parametrize("noise", ["normal", "logistic", "gumbel"])
def test_quadratic_gradient_and_hessian_converge(noise, rng):
    # f(y) = ½ yᵀAy + bᵀy: the smoothed f has gradient A y + b + A σ E[Z]
    # and Hessian A (E[Z] = 0 except for Gumbel: Euler's γ per coordinate).
    a, b = _quadratic(rng)
    y0 = rng.normal(size=3)
    sigma, replicates = 0.5, 400
    shift = np.euler_gamma if noise == "gumbel" else 0.0
    true_gradient = a @ (y0 + sigma * shift) + b
    fn = lambda v: 0.5 * tf.einsum("...i,ij,...j->...", v, tf.constant(a), v) + tf.reduce_sum(
        v * tf.constant(b), -1)
    estimate = tf.function(lambda y, s: smoothed_loss_derivatives(
        fn, y, sigma=sigma, num_samples=s, seed=[1, 2], noise=noise, hessian=True), jit_compile=True)
    y = tf.constant(np.tile(y0, (replicates, 1)))
    rms = {}
    for samples in (4, 64):
        est = estimate(y, samples)
        g, g_se, g_rms = _replicate_errors(est.gradient.numpy(), true_gradient)
        h, h_se, h_rms = _replicate_errors(est.hessian.numpy(), a)
        assert np.all(np.abs(g - true_gradient) < K_STANDARD_ERRORS * g_se), (g, true_gradient, g_se)
        assert np.all(np.abs(h - a) < K_STANDARD_ERRORS * h_se + 1e-12), (h, a, h_se)
        rms[samples] = (g_rms, h_rms)
    # Monte-Carlo error falls like 1/√S: 16× the samples, ~4× smaller error.
    assert rms[64][0] < rms[4][0] / 2.5 and rms[64][1] < rms[4][1] / 2.5, rms


@pytest.mark.parametrize("noise", NOISES)
def test_linear_gradient_is_unbiased_and_hessian_vanishes(noise, rng):
    # f(y) = bᵀy is its own smoothing up to a constant: gradient b, Hessian 0
    # (for Cauchy too: Z ν'(Z) is bounded, though Z has no mean).
    b = rng.normal(size=4)
    fn = lambda v: tf.reduce_sum(v * tf.constant(b), -1)
    y = tf.constant(np.tile(rng.normal(size=4), (500, 1)))
    est = smoothed_loss_derivatives(fn, y, sigma=0.3, num_samples=32, seed=[4, 4], noise=noise, hessian=True)
    g, g_se, _ = _replicate_errors(est.gradient.numpy(), b)
    h, h_se, _ = _replicate_errors(est.hessian.numpy(), 0.0)
    assert np.all(np.abs(g - b) < K_STANDARD_ERRORS * g_se)
    assert np.all(np.abs(h) < K_STANDARD_ERRORS * h_se + 1e-12)


def test_value_backpropagates_the_gradient_estimate(mode, rng):
    a, b = _quadratic(rng)
    fn = lambda v: 0.5 * tf.einsum("...i,ij,...j->...", v, tf.constant(a), v)

    def run(y):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(y)
            est = smoothed_loss_derivatives(fn, y, sigma=0.4, num_samples=6, seed=[2, 3])
            smoothed = smoothed_function(fn, y, sigma=0.4, num_samples=6, seed=[2, 3])
            total, total_smoothed = tf.reduce_sum(est.value), tf.reduce_sum(smoothed)
        return est.gradient, tape.gradient(total, y), tape.gradient(total_smoothed, y), est.value, smoothed

    gradient, backprop, backprop_smoothed, value, smoothed = run_in_mode(mode, run, tf.constant(rng.normal(size=(3, 3))))
    np.testing.assert_allclose(backprop, gradient, rtol=1e-10)
    np.testing.assert_allclose(backprop_smoothed, gradient, rtol=1e-10)
    np.testing.assert_allclose(value, smoothed, rtol=1e-12)


def test_jacobian_estimate_of_a_linear_map_converges(rng):
    # f(y) = W y: smoothed Jacobian W; the backprop of smoothed_function is
    # the vector-Jacobian product of the same estimate.
    w = rng.normal(size=(2, 3))
    fn = lambda v: tf.einsum("km,...m->...k", tf.constant(w), v)
    y = tf.constant(np.tile(rng.normal(size=3), (400, 1)))
    mean, jacobian = smoothed_jacobian(fn, y, sigma=0.5, num_samples=16, seed=[0, 5])
    j, j_se, _ = _replicate_errors(jacobian.numpy(), w)
    assert jacobian.shape == (400, 2, 3) and mean.shape == (400, 2)
    assert np.all(np.abs(j - w) < K_STANDARD_ERRORS * j_se)
    v = tf.constant(rng.normal(size=(400, 2)))
    with tf.GradientTape() as tape:
        tape.watch(y)
        out = tf.reduce_sum(v * smoothed_function(fn, y, sigma=0.5, num_samples=16, seed=[0, 5]))
    np.testing.assert_allclose(tape.gradient(out, y), np.einsum("nk,nkm->nm", v, jacobian), rtol=1e-9)


def test_non_differentiable_function_gets_a_gradient():
    # Smoothing a step function: E[1{y + σZ > 0}] = Φ(y/σ) for Normal noise.
    y = tf.constant(np.zeros((2000, 1)))
    fn = lambda v: tf.cast(v[..., 0] > 0, v.dtype)
    est = smoothed_loss_derivatives(fn, y, sigma=1.0, num_samples=8, seed=[8, 8])
    g, g_se, _ = _replicate_errors(est.gradient.numpy()[:, 0], 1 / np.sqrt(2 * np.pi))
    assert abs(g - 1 / np.sqrt(2 * np.pi)) < K_STANDARD_ERRORS * g_se


def test_seeds_reproduce_and_differ(rng):
    fn = lambda v: tf.reduce_sum(v**2, -1)
    y = tf.constant(rng.normal(size=(2, 3)))
    run = lambda seed: smoothed_loss_derivatives(fn, y, sigma=1.0, num_samples=3, seed=seed).gradient.numpy()
    np.testing.assert_array_equal(run([1, 2]), run([1, 2]))
    assert np.abs(run([1, 2]) - run([1, 3])).max() > 1e-3
    # A seed generator gives a new seed on every call, also compiled.
    a, b = make_seed_generator(11), make_seed_generator(11)
    step = tf.function(next_seed, jit_compile=True)
    seeds_a = [step(a).numpy() for _ in range(3)]
    seeds_b = [next_seed(b).numpy() for _ in range(3)]
    np.testing.assert_array_equal(seeds_a, seeds_b)
    assert len({tuple(s) for s in seeds_a}) == 3


def test_bad_arguments():
    fn = lambda v: tf.reduce_sum(v, -1)
    y = tf.ones([2, 3])
    with pytest.raises(ValueError, match="num_samples"):
        smoothed_loss_derivatives(fn, y, sigma=1.0, num_samples=0, seed=[0, 0])
    with pytest.raises(ValueError, match="sigma"):
        smoothed_loss_derivatives(fn, y, sigma=0.0, num_samples=2, seed=[0, 0])
    with pytest.raises(TypeError, match="sigma"):
        smoothed_loss_derivatives(fn, y, sigma="big", num_samples=2, seed=[0, 0])
    with pytest.raises(ValueError, match="noise"):
        smoothed_loss_derivatives(fn, y, sigma=1.0, num_samples=2, seed=[0, 0], noise="uniform")
    with pytest.raises(ValueError, match="seed"):
        smoothed_loss_derivatives(fn, y, sigma=1.0, num_samples=2, seed=[0, 0, 1])
    with pytest.raises(ValueError, match="y"):
        smoothed_loss_derivatives(fn, tf.ones([2, 3, 4]), sigma=1.0, num_samples=2, seed=[0, 0])
    with pytest.raises(TypeError, match="y"):
        smoothed_loss_derivatives(fn, tf.ones([2, 3], tf.int32), sigma=1.0, num_samples=2, seed=[0, 0])
    with pytest.raises(ValueError, match="seed"):
        make_seed_generator(-1)
