"""Fuzz: ``newton_target`` over losses, curvatures, solvers, estimates, dtypes, values.

Properties: a ValueError / TypeError naming the argument, or a target with
the shape and dtype of ``y_pred`` that is finite for every sample whose
inputs are finite; those samples' targets do not change when a NaN sample
is added (per-sample curvature: any non-finite sample); eager and XLA agree
or both raise.
"""

import keras
import numpy as np
import tensorflow as tf
from hypothesis import assume
from hypothesis import strategies as st

import keras_newton as kn
from keras_newton.newton import HessianEstimate, Solver

from fuzz_strategies import (BATCH_SIZES, DTYPES, CompiledCache, as_tensor,
                             assert_error_names_argument, assert_modes_agree, finite_rows,
                             fuzz_tests, value_arrays)


def _log_cosh(y_true, y_pred):
    """No closed form: the autodiff path."""
    return tf.reduce_mean(tf.math.log(tf.cosh(y_pred - y_true)), axis=-1)


LOSSES = {
    "mse": lambda: "mse",
    "huber": keras.losses.Huber,
    "log_cosh": lambda: _log_cosh,
    "softmax_ce": lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
}
OPTION_NAMES = ("curvature", "damping", "solver", "indefinite", "derivatives",
                "HessianEstimate.rank", "HessianEstimate.samples",
                "HessianEstimate.products", "rank", "samples", "y_pred", "y_true",
                "closed_form", "woodbury", "cg")


@st.composite
def steps(draw):
    """Keyword options of a NewtonStep (some invalid on purpose)."""
    estimate = draw(st.sampled_from([
        None, dict(rank=1), dict(rank=2, products="finite_differences"), dict(samples=2),
        dict(rank=5)]))
    return dict(
        curvature=draw(st.sampled_from(["hessian", "fisher", "elementwise_hessian"])),
        damping=draw(st.sampled_from([0.0, 1e-3, 0.1, 10.0])),
        solver=draw(st.sampled_from(["auto", "dense", "woodbury", "cg"])),
        indefinite=draw(st.sampled_from(["abs", "clip"])),
        derivatives=draw(st.sampled_from(["auto", "autodiff", "closed_form"])),
        estimate=estimate,
    )


def _build_step(options):
    estimate = options["estimate"]
    solver = Solver(options["solver"], indefinite=options["indefinite"])
    return kn.NewtonStep(options["curvature"], options["damping"],
                         estimate=None if estimate is None else HessianEstimate(**estimate),
                         solver=solver, derivatives=options["derivatives"])


@st.composite
def batches(draw):
    m = draw(st.sampled_from([1, 2, 3]))
    n = draw(BATCH_SIZES)
    dtype = draw(st.sampled_from(DTYPES))
    y_pred = draw(value_arrays((n, m), dtype))
    y_true = draw(value_arrays((n, m), tf.float32))
    return y_true, y_pred, dtype


def _softmax_labels(y_true):
    """Rows on the simplex (NaN rows stay NaN) for the cross-entropy."""
    clean = np.nan_to_num(np.abs(y_true.astype(np.float64)), posinf=1.0) + 1e-3
    labels = clean / clean.sum(axis=1, keepdims=True)
    return np.where(np.isnan(y_true).any(axis=1, keepdims=True), np.nan, labels)


def _inputs(loss_name, y_true, y_pred, dtype):
    if loss_name == "softmax_ce":
        y_true = _softmax_labels(y_true)
    return as_tensor(y_true.astype(np.float32), tf.float32), as_tensor(y_pred, dtype)


def _target_or_error(loss_name, options, y_true, y_pred):
    try:
        step = _build_step(options)
        return kn.newton_target(LOSSES[loss_name](), y_true, y_pred, step), None
    except (ValueError, TypeError) as error:
        return None, error


def check_target_shape_dtype_finite(loss_name, options, batch):
    """Documented shape and dtype; finite wherever the sample's inputs are."""
    y_true, y_pred = _inputs(loss_name, *batch)
    target, error = _target_or_error(loss_name, options, y_true, y_pred)
    if error is not None:
        assert_error_names_argument(error, OPTION_NAMES)
        return
    assert target.shape == y_pred.shape and target.dtype == y_pred.dtype
    finite = finite_rows(y_true.numpy(), tf.cast(y_pred, tf.float64).numpy())
    values = tf.cast(target, tf.float64).numpy()
    assert np.isfinite(values[finite]).all(), (values, finite)


test_target_shape_dtype_finite, test_target_shape_dtype_finite_slow = fuzz_tests(
    check_target_shape_dtype_finite, st.sampled_from(sorted(LOSSES)), steps(), batches(),
    default_examples=8)


def check_finite_samples_ignore_a_nan_sample(loss_name, options, batch, position):
    """Adding a NaN sample leaves the other samples' targets as they were.

    The NaN sample is left out of the batch curvature. Sketched Hessians are
    excluded: their products are batch means, and a NaN one falls back to the
    gradient step for the whole batch (documented in ``newton_target``).
    """
    assume(options["estimate"] is None or "rank" not in options["estimate"])
    y_true, y_pred, dtype = batch
    keep = finite_rows(y_true, y_pred.astype(np.float64))
    y_true, y_pred = y_true[keep], y_pred[keep]
    assume(len(y_pred) > 0)
    clean_true, clean_pred = _inputs(loss_name, y_true, y_pred, dtype)
    clean, error = _target_or_error(loss_name, options, clean_true, clean_pred)
    assume(error is None)
    index = min(position, len(y_pred))
    nan_pred = np.insert(y_pred.astype(np.float64), index, np.nan, axis=0)
    nan_true = np.insert(y_true, index, 0.5, axis=0)
    with_nan, error = _target_or_error(loss_name, options, *_inputs(
        loss_name, nan_true, nan_pred.astype(y_pred.dtype), dtype))
    assert error is None, error
    others = np.delete(tf.cast(with_nan, tf.float64).numpy(), index, axis=0)
    np.testing.assert_allclose(others, tf.cast(clean, tf.float64).numpy(), rtol=1e-5,
                               atol=1e-5)


test_finite_samples_ignore_a_nan_sample, test_finite_samples_ignore_a_nan_sample_slow = (
    fuzz_tests(check_finite_samples_ignore_a_nan_sample, st.sampled_from(sorted(LOSSES)),
               steps(), batches(), st.integers(0, 3), default_examples=5))


_COMPILED = CompiledCache()


def check_eager_and_xla_agree(loss_name, options, batch):
    """Same targets (to the dtype's tolerance) in eager and XLA, or both raise."""
    options = dict(options, damping=max(options["damping"], 1e-3))  # λ = 0: ill-posed
    y_true, y_pred = _inputs(loss_name, *batch)
    eager, eager_error = _target_or_error(loss_name, options, y_true, y_pred)
    key = (loss_name, tuple(sorted((k, repr(v)) for k, v in options.items())))
    try:
        xla_fn = _COMPILED.get(key, lambda: lambda t, y: kn.newton_target(
            LOSSES[loss_name](), t, y, _build_step(options)))
        xla, xla_error = xla_fn(y_true, y_pred), None
    except (ValueError, TypeError) as error:
        xla, xla_error = None, error
    assert (eager_error is None) == (xla_error is None), (eager_error, xla_error)
    if eager_error is None:
        scale = 1.0 + np.nanmax(np.abs(np.nan_to_num(
            tf.cast(y_pred, tf.float64).numpy(), posinf=0, neginf=0)), initial=0.0)
        assert_modes_agree(tf.cast(eager, tf.float64), tf.cast(xla, tf.float64),
                           y_pred.dtype, scale)


test_eager_and_xla_agree, test_eager_and_xla_agree_slow = fuzz_tests(
    check_eager_and_xla_agree, st.sampled_from(sorted(LOSSES)), steps(), batches(),
    default_examples=6)
