"""Woodbury Fisher and CG element-wise Hessian solvers for many outputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton import Solver
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
    dense = kn.newton_target(_quartic, t, y, kn.NewtonStep(curvature, 0.05, solver="dense"))

    def target(a, b):
        return kn.newton_target(_quartic, a, b, kn.NewtonStep(
            curvature, 0.05, solver=Solver(solver, cg_tolerance=1e-10)))

    got = run_in_mode(mode, target, t, y)
    np.testing.assert_allclose(got, dense.numpy(), rtol=1e-6, atol=1e-7)


def test_auto_solver_choice_by_shape():
    def choose(curvature, damping, m, batch_size, indefinite="abs", protocol=False):
        return Solver("auto", indefinite).choose(curvature, damping > 0, m, batch_size, protocol)

    assert choose("fisher", 1e-3, 4096, 8) == "woodbury"
    assert choose("fisher", 1e-3, 4096, None) == "woodbury"
    assert choose("fisher", 1e-3, 300, 1000) == "dense"
    # The span solve takes λ = 0 (pseudo-inverse), so λ no longer matters.
    assert choose("fisher", 0.0, 4096, 8) == "woodbury"
    assert choose("fisher", 1e-3, 10, 8) == "dense"
    assert choose("elementwise_hessian", 1e-3, 4096, 8) == "cg"
    assert choose("hessian", 1e-3, 4096, 8) == "dense"
    # CG cannot apply indefinite="clip": "auto" keeps the dense solve then.
    assert choose("elementwise_hessian", 1e-3, 4096, 8, "abs") == "cg"
    assert choose("elementwise_hessian", 1e-3, 4096, 8, "clip") == "dense"
    assert choose("fisher", 1e-3, 4096, 8, "clip") == "woodbury"
    # A loss with its own curvature has no Hessian-vector products for CG.
    assert choose("elementwise_hessian", 1e-3, 4096, 8, protocol=True) == "dense"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(solver="lu"), "solver"),
        (dict(solver="woodbury", curvature="hessian"), "woodbury"),
        (dict(solver="cg", curvature="fisher"), "cg"),
        (dict(solver=dict(method="cg", indefinite="clip"), curvature="elementwise_hessian"),
         "indefinite"),
    ],
)
def test_bad_solver_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kn.NewtonLoss("mse", kn.NewtonStep(**kwargs))


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
    step = kn.NewtonStep("elementwise_hessian", damping, solver=Solver(cg_tolerance=1e-6))
    z = tf.function(lambda a, b: kn.newton_target(_quartic, a, b, step), jit_compile=True)(t, y)
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


def _quadratic(matrix):
    """Per-sample ``½ yᵀAy - bᵀy`` (``y_true`` is ``b``): every ``H_i = A``."""
    matrix = tf.constant(matrix)

    def loss(b, y):
        return tf.reduce_sum(0.5 * y * tf.matmul(y, matrix) - b * y, axis=-1)

    return loss


def _truncated_cg(h, g, damping, max_iterations, tolerance):
    """The rule documented in keras_newton.conjugate_gradient, in NumPy.

    Returns the step and how it ended: "first" (non-positive curvature at the
    first direction: g / max(λ, 1)), "later" (at a later one: the iterate so
    far), "converged" or "cap".
    """
    shifted = h + damping * np.eye(len(g))
    x, r, p = np.zeros_like(g), g.copy(), g.copy()
    norm = r @ r
    for k in range(max_iterations):
        q = shifted @ p
        curvature = p @ q
        if curvature <= 0:
            return (g / max(damping, 1.0), "first") if k == 0 else (x, "later")
        alpha = norm / curvature
        x, r = x + alpha * p, r - alpha * q
        new_norm = r @ r
        if new_norm <= tolerance**2 * (g @ g):
            return x, "converged"
        p, norm = r + new_norm / norm * p, new_norm
    return x, "cap"


def test_cg_on_an_indefinite_hessian_stops_at_negative_curvature(mode, rng):
    # H = A with eigenvalues of both signs; the gradients are chosen so that
    # CG meets non-positive curvature both at the first direction and later.
    basis, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a = basis @ np.diag([3.0, 2.0, 1.5, 1.0, -0.5, -2.0]) @ basis.T
    a = 0.5 * (a + a.T)
    wanted = np.stack([
        basis[:, 5],                                   # gᵀAg = -2
        basis[:, 0] + basis[:, 1] + 0.3 * basis[:, 5],  # positive first, then negative
        basis[:, 4] + basis[:, 5] + 0.1 * basis[:, 0],  # gᵀAg < 0
        *rng.normal(size=(3, 6)),
    ])
    b = rng.normal(size=wanted.shape)
    y = np.linalg.solve(a, (wanted + b).T).T  # so that g_i = A y_i - b = wanted_i
    damping, iterations, tolerance = 1e-3, 50, 1e-12

    def target(t, v):
        return kn.newton_target(_quadratic(a), t, v, kn.NewtonStep(
            "elementwise_hessian", damping,
            solver=Solver("cg", cg_max_iterations=iterations, cg_tolerance=tolerance)))

    step = y - run_in_mode(mode, target, tf.constant(b), tf.constant(y))
    g = y @ a - b
    np.testing.assert_allclose(g, wanted, atol=1e-10)
    assert np.all(np.isfinite(step))
    assert np.all(np.sum(g * step, axis=1) > 0)  # descent directions
    expected, endings = zip(*(_truncated_cg(a, gi, damping, iterations, tolerance) for gi in g))
    assert {"first", "later"} <= set(endings), endings
    np.testing.assert_allclose(step, np.stack(expected), rtol=1e-8, atol=1e-10)
    # The first-direction fallback is the plain gradient step (λ < 1).
    np.testing.assert_allclose(step[0], g[0], rtol=1e-12)


def _softmax(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("loss_name", ["quadratic", "softmax_cross_entropy"])
def test_cg_matches_a_dense_numpy_solve_for_non_diagonal_hessians(mode, loss_name, rng):
    n, m, damping = 5, 7, 0.01
    y = rng.normal(size=(n, m))
    if loss_name == "quadratic":
        basis, _ = np.linalg.qr(rng.normal(size=(m, m)))
        a = basis @ np.diag(np.linspace(0.1, 5.0, m)) @ basis.T
        a = 0.5 * (a + a.T)
        loss, t = _quadratic(a), rng.normal(size=(n, m))
        g, hessians = y @ a - t, np.broadcast_to(a, (n, m, m))
    else:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        t = _softmax(rng.normal(size=(n, m)))
        q = _softmax(y)
        g = q - t
        hessians = np.stack([np.diag(qi) - np.outer(qi, qi) for qi in q])

    def target(a_true, b_pred):
        return kn.newton_target(loss, a_true, b_pred, kn.NewtonStep(
            "elementwise_hessian", damping, solver=Solver("cg", cg_tolerance=1e-12)))

    step = y - run_in_mode(mode, target, tf.constant(t), tf.constant(y))
    expected = np.stack([np.linalg.solve(h + damping * np.eye(m), gi)
                         for h, gi in zip(hessians, g)])
    np.testing.assert_allclose(step, expected, rtol=1e-7, atol=1e-9)


def test_auto_solver_above_256_outputs_uses_cg_with_abs_and_dense_with_clip(rng):
    # Indefinite per-sample Hessian with m = 257: the two solves differ, and
    # "auto" must pick the one that honours the requested `indefinite`.
    m, damping = 257, 1e-2
    basis, _ = np.linalg.qr(rng.normal(size=(m, m)))
    a = basis @ np.diag(np.linspace(-1.0, 2.0, m)) @ basis.T
    a = 0.5 * (a + a.T)
    t, y = tf.constant(rng.normal(size=(2, m))), tf.constant(rng.normal(size=(2, m)))

    def target(method, indefinite="abs"):
        return kn.newton_target(_quadratic(a), t, y, kn.NewtonStep(
            "elementwise_hessian", damping, solver=Solver(method, indefinite))).numpy()

    cg = target("cg")
    np.testing.assert_array_equal(target("auto"), cg)
    clip = target("dense", "clip")
    np.testing.assert_array_equal(target("auto", "clip"), clip)
    assert np.abs(cg - clip).max() > 1e-2
