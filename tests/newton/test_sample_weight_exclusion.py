"""A NaN, infinite or negative sample weight leaves out only its own sample.

One NaN weight used to cancel the whole batch's step (every weight gradient
NaN, zeroed by the guard) and log ``loss=nan``. Now the sample is excluded
from the curvature, the Newton step and the (3b) loss.

What equality holds: Keras' default ``sum_over_batch_size`` reduction
divides by the full batch size ``N``, counting the excluded sample, so the
batch with one excluded sample gives the loss ``Σ_{i≠j} w_i ℓ_i / N``. The
batch without it, with every weight scaled by ``(N - 1)/N``, gives
``Σ_{i≠j} (N-1)/N · w_i ℓ_i / (N - 1)``, the same loss, the same batch
curvature (over the same ``N - 1`` samples; weights do not enter the
curvature) and so the same SGD step.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton._sample_weights import (
    exclude_invalid_weights,
    invalid_weight_rows,
)

CROSS_ENTROPY = keras.losses.CategoricalCrossentropy(from_logits=True)
COMPILE_MODES = {"eager": dict(run_eagerly=True), "function": dict(jit_compile=False),
                 "xla": dict(jit_compile=True)}


def _data(n=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, n)]
    return x, y


def _model(compile_mode, curvature="hessian", weights=None):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    model = kn.NewtonLossModel(inputs, keras.layers.Dense(3)(inputs), curvature=curvature,
                               damping=0.1)
    model.compile(keras.optimizers.SGD(0.5), loss=CROSS_ENTROPY, **COMPILE_MODES[compile_mode])
    if weights is not None:
        model.set_weights(weights)
    return model


@pytest.mark.parametrize("compile_mode, curvature, bad", [
    ("eager", "hessian", np.nan), ("function", "hessian", np.nan), ("xla", "hessian", np.nan),
    ("function", "fisher", np.nan), ("xla", "fisher", -1.0), ("function", "hessian", np.inf),
    ("xla", "hessian", -1.0)])
def test_bad_weight_excludes_only_its_sample(compile_mode, curvature, bad):
    # Position 4 of 8 without shuffling: where XLA:CPU let a NaN-output row
    # into the curvature (why exclusion is an explicit mask, not NaN).
    x, y = _data()
    n, j = len(x), 4
    weights = np.linspace(0.5, 1.5, n).astype("float32")
    bad_weights = weights.copy()
    bad_weights[j] = bad

    model = _model(compile_mode, curvature)
    w0 = model.get_weights()
    history = model.fit(x, y, sample_weight=bad_weights, batch_size=n, verbose=0,
                        shuffle=False)
    got = model.get_weights()

    keep = np.arange(n) != j
    reference = _model(compile_mode, curvature, w0)
    ref_history = reference.fit(x[keep], y[keep], sample_weight=weights[keep] * (n - 1) / n,
                                batch_size=n, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    assert max(np.abs(a - b).max() for a, b in zip(got, w0)) > 1e-3  # it trained
    for a, b in zip(got, reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history.history["loss"], ref_history.history["loss"], rtol=1e-5)


def test_issue_reproducer_nan_weight_moves_the_weights():
    x, y = _data()
    model = _model("function", "hessian")
    sw = np.ones(8, "float32")
    sw[3] = np.nan
    w0 = model.get_weights()
    history = model.fit(x, y, sample_weight=sw, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert max(np.abs(a - b).max() for a, b in zip(model.get_weights(), w0)) > 1e-3


def test_non_finite_input_row_is_left_out_of_the_curvature_too():
    # The same equality for a NaN input row (weight 1 elsewhere).
    x, y = _data()
    n, j = len(x), 5
    x_nan = x.copy()
    x_nan[j, 1] = np.nan
    model = _model("function", "hessian")
    w0 = model.get_weights()
    model.fit(x_nan, y, batch_size=n, verbose=0)
    keep = np.arange(n) != j
    reference = _model("function", "hessian", w0)
    reference.fit(x[keep], y[keep], sample_weight=np.full(n - 1, (n - 1) / n, "float32"),
                  batch_size=n, verbose=0)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_weight_helpers():
    weights = {"a": tf.constant([[1.0, 1.0], [1.0, -0.5], [2.0, 2.0]]),
               "b": tf.constant([1.0, 1.0, np.nan])}
    np.testing.assert_array_equal(invalid_weight_rows(weights), [False, True, True])
    cleaned, excluded = exclude_invalid_weights(weights, tf.constant([True, False, False]))
    np.testing.assert_array_equal(excluded, [True, True, True])
    assert np.all(cleaned["a"].numpy() == 0) and np.all(cleaned["b"].numpy() == 0)
    assert invalid_weight_rows(None) is None
    assert exclude_invalid_weights(None, None) == (None, None)
