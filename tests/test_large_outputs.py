"""Woodbury Fisher and CG element-wise Hessian solvers for many outputs."""

import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton_target import choose_solver
from conftest import run_in_mode


def _quartic(y_true, y_pred):
    """Convex, non-quadratic, with a diagonal per-sample Hessian."""
    m = y_pred.shape[-1]
    return tf.reduce_sum(tf.sqrt(1.0 + tf.square(y_pred - y_true)) + 0.1 * y_pred**4, -1) / m


def _quartic_diagonal_hessian(y_true, y_pred):
    d = y_pred - y_true
    return ((1.0 + d**2) ** -1.5 + 1.2 * y_pred**2) / y_pred.shape[-1]


@pytest.mark.parametrize("curvature, solver", [("fisher", "woodbury"), ("elementwise_hessian", "cg")])
def test_matrix_free_solvers_match_the_dense_solve(mode, curvature, solver, rng):
    y = tf.constant(rng.normal(size=(5, 12)), tf.float64)
    t = tf.constant(rng.normal(size=(5, 12)), tf.float64)
    dense = kn.newton_target(_quartic, t, y, curvature=curvature, damping=0.05, solver="dense")

    def target(a, b):
        return kn.newton_target(_quartic, a, b, curvature=curvature, damping=0.05,
                                solver=solver, cg_tolerance=1e-10)

    got = run_in_mode(mode, target, t, y)
    np.testing.assert_allclose(got, dense.numpy(), rtol=1e-6, atol=1e-7)


def test_auto_solver_choice_by_shape():
    assert choose_solver("auto", "fisher", 1e-3, 4096, 8, None) == "woodbury"
    assert choose_solver("auto", "fisher", 1e-3, 4096, None, None) == "woodbury"
    assert choose_solver("auto", "fisher", 1e-3, 300, 1000, None) == "dense"
    assert choose_solver("auto", "fisher", 0.0, 4096, 8, None) == "dense"
    assert choose_solver("auto", "fisher", 1e-3, 10, 8, None) == "dense"
    assert choose_solver("auto", "elementwise_hessian", 1e-3, 4096, 8, None) == "cg"
    assert choose_solver("auto", "hessian", 1e-3, 4096, 8, None) == "dense"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(solver="lu"), "solver"),
        (dict(solver="woodbury", curvature="hessian"), "woodbury"),
        (dict(solver="woodbury", curvature="fisher", damping=0.0), "damping"),
        (dict(solver="cg", curvature="fisher"), "cg"),
    ],
)
def test_bad_solver_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kn.NewtonLoss("mse", **kwargs)


def test_fisher_with_4096_outputs_solves_through_woodbury(rng):
    n, m, damping = 8, 4096, 1e-2
    y = tf.constant(rng.normal(size=(n, 64, 64)), tf.float32)  # m = 4096
    t = tf.constant(rng.normal(size=(n, 64, 64)), tf.float32)
    z = tf.function(lambda a, b: kn.newton_target(_flat_quartic, a, b, curvature="fisher",
                                                  damping=damping), jit_compile=True)(t, y)
    steps = (y - z).numpy().reshape(n, m).astype(np.float64)
    g = _flat_quartic_gradient(t.numpy(), y.numpy()).reshape(n, m)
    # Residual of (GᵀG/N + λI) s_i = g_i, by matrix-vector products only.
    residual = (steps @ g.T) @ g / n + damping * steps - g
    assert np.abs(residual).max() < 1e-3 * np.abs(g).max()


def test_elementwise_hessian_with_4096_outputs_solves_through_cg(rng):
    n, m, damping = 4, 4096, 1e-3
    y = tf.constant(rng.normal(size=(n, m)), tf.float32)
    t = tf.constant(rng.normal(size=(n, m)), tf.float32)
    z = tf.function(lambda a, b: kn.newton_target(_quartic, a, b, curvature="elementwise_hessian",
                                                  damping=damping, cg_tolerance=1e-6),
                    jit_compile=True)(t, y)
    # The Hessian is diagonal here, so the exact step is g / (h + λ).
    d = (y - t).numpy().astype(np.float64)
    yy = y.numpy().astype(np.float64)
    g = (d / np.sqrt(1 + d**2) + 0.4 * yy**3) / m
    h = _quartic_diagonal_hessian(t.numpy().astype(np.float64), yy)
    np.testing.assert_allclose((y - z).numpy(), g / (h + damping), rtol=1e-3, atol=1e-5)


def _flat_quartic(y_true, y_pred):
    return tf.reduce_mean(tf.sqrt(1.0 + tf.square(y_pred - y_true)), axis=[1, 2])


def _flat_quartic_gradient(t, y):
    d = (y - t).astype(np.float64)
    return d / np.sqrt(1 + d**2) / (y.shape[1] * y.shape[2])
