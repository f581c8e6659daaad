"""The span (Woodbury) solve of the empirical Fisher equals the exact step for every λ ≥ 0.

The reference is NumPy float64 written from the formulas: the per-sample
softmax cross-entropy gradients ``g_i = softmax(y_i) - p_i`` (paper,
Example 2), ``F = mean_i g_i g_iᵀ`` and ``(F + λI)^{-1} g_i`` by an
eigendecomposition of ``F`` restricted to its range, with the eigenvalue
floor ``10⁻⁶ max e`` of the dense solve (so ``λ = 0`` is the floored
pseudo-inverse). The textbook Woodbury form divided by ``λ`` and lost the
step for small ``λ`` (``max|z* - y|`` of 1788 instead of 8.1 at ``λ = 1e-10``).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton._woodbury import woodbury_fisher_steps
from conftest import run_in_mode

# Down to the smallest float32 denormal (1e-45 rounds to 1.4e-45) and 0.
DAMPINGS = (1.0, 1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-20, 1e-38, 1e-40, 1e-45, 0.0)
CROSS_ENTROPY = keras.losses.CategoricalCrossentropy(from_logits=True)


def _reference_steps(gradients, damping, usable=None):
    """``(F + λI)^{-1} g_i`` in float64, ``F`` over the usable rows only."""
    g = np.asarray(gradients, np.float64)
    usable = np.ones(len(g), bool) if usable is None else usable
    fisher = g[usable].T @ g[usable] / max(usable.sum(), 1)
    e, v = np.linalg.eigh(fisher)
    # The range of F; its complement holds no part of any g_i.
    in_range = e > 1e-12 * e.max()
    d = np.maximum(e[in_range] + damping, 1e-6 * e.max())
    steps = (g @ v[:, in_range]) / d @ v[:, in_range].T
    return np.where(usable[:, None], steps, 0.0)


def _batch(rng, n=8, m=300):
    labels = np.eye(m)[rng.integers(0, m, n)]
    logits = rng.normal(size=(n, m))
    q = np.exp(logits - logits.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    return labels, logits, q - labels


@pytest.mark.parametrize("dtype, tolerance", [(tf.float32, 1e-5), (tf.float64, 1e-10)])
@pytest.mark.parametrize("damping", DAMPINGS)
def test_woodbury_target_equals_float64_reference_for_every_damping(mode, dtype, tolerance,
                                                                   damping, rng):
    labels, logits, gradients = _batch(rng)
    expected = logits - _reference_steps(gradients, damping)
    y_true, y_pred = tf.constant(labels, dtype), tf.constant(logits, dtype)

    def target(t, y):
        return kn.newton_target(CROSS_ENTROPY, t, y,
                                kn.NewtonStep("fisher", damping=damping, solver="woodbury"))

    got = run_in_mode(mode, target, y_true, y_pred)
    assert np.all(np.isfinite(got))
    step_size = np.abs(expected - logits).max()  # about 8 here
    assert np.abs(got - expected).max() <= tolerance * step_size


@pytest.mark.parametrize("damping", [1e-2, 1e-8, 0.0])
def test_auto_chooses_woodbury_and_matches_dense_float64(damping, rng):
    # The reproducer: m = 300 > 256 outputs, so "auto" is Woodbury.
    labels, logits, _ = _batch(rng)
    y_true = tf.constant(labels, tf.float32)
    auto = kn.newton_target(CROSS_ENTROPY, y_true, tf.constant(logits, tf.float32),
                            kn.NewtonStep("fisher", damping=damping))
    dense64 = kn.newton_target(CROSS_ENTROPY, tf.constant(labels), tf.constant(logits),
                               kn.NewtonStep("fisher", damping=damping, solver="dense"))
    step_size = np.abs(dense64.numpy() - logits).max()
    assert np.abs(auto.numpy() - dense64.numpy()).max() <= 1e-5 * step_size


@pytest.mark.parametrize("damping", [1e-3, 1e-12, 0.0])
def test_singular_fisher_with_repeated_and_left_out_rows(mode, damping, rng):
    # Rows 1 and 2 repeat row 0 and row 5 is NaN (left out, zero step): the
    # kernel GGᵀ is singular, and its null directions must not be amplified.
    _, _, gradients = _batch(rng, n=7, m=400)
    gradients[1] = gradients[0]
    gradients[2] = 2.0 * gradients[0]
    gradients[5] = np.nan
    usable = np.isfinite(gradients).all(1)
    # Left-out rows enter the solve as zero rows (see estimators.FisherFactor),
    # so F = GᵀG / N over all N rows: rescale for the reference over usable rows.
    scale = np.sqrt(len(gradients) / usable.sum())
    rows = np.where(usable[:, None], gradients, 0.0) * scale
    expected = _reference_steps(gradients, damping, usable)
    got = run_in_mode(mode, lambda g: woodbury_fisher_steps(g, damping) / scale,
                      tf.constant(rows, tf.float32))
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_overflowing_kernel_falls_back_to_the_gradient(mode):
    rows = tf.constant([[3e38, 1.0, 0.0], [0.0, 1.0, 2.0]], tf.float32)
    got = run_in_mode(mode, lambda g: woodbury_fisher_steps(g, 0.1), rows)
    np.testing.assert_array_equal(got, rows.numpy())


def test_negative_damping_is_an_error():
    with pytest.raises(ValueError, match="damping"):
        woodbury_fisher_steps(tf.ones([2, 3]), -1e-3)
