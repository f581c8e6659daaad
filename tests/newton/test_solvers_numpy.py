"""The three damped solves against NumPy, in every dtype they accept.

Each solve of the Newton step ``(M + λI)^{-1} g`` is checked directly
(not through ``newton_target``) against ``numpy.linalg`` written from its
formula: the Woodbury identity for the empirical Fisher, batched conjugate
gradients for per-sample Hessians, and the eigen-solves with their
treatment of negative eigenvalues. Solves run in float32 or float64
(``_eigen_solve.solve_dtype`` maps every other float type to float32), so
those are the dtypes here; every test runs eagerly, in ``tf.function`` and
under XLA.
"""

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.newton._conjugate_gradient import conjugate_gradient_steps
from keras_newton.newton._eigen_solve import (
    RELATIVE_EIGENVALUE_FLOOR,
    damped_solve,
    low_rank_damped_solve,
)
from keras_newton.newton._woodbury import woodbury_fisher_steps

DTYPES = [np.float32, np.float64]


def _tolerance(dtype, mode):
    """float32 after a solve of a matrix with condition number <~ 1e3; float64
    to 1e-10, or 1e-6 under XLA, whose iterative (Jacobi) eigh stops at a
    relative accuracy near 1e-7 where LAPACK's reaches the float64 rounding."""
    if dtype == np.float32:
        return dict(rtol=2e-4, atol=1e-5)
    return dict(rtol=1e-6, atol=1e-8) if mode == "xla" else dict(rtol=1e-10, atol=1e-12)


def _spd(rng, m, low=0.5, high=5.0):
    """A symmetric matrix with eigenvalues in ``[low, high]``."""
    basis, _ = np.linalg.qr(rng.normal(size=(m, m)))
    return basis @ np.diag(rng.uniform(low, high, size=m)) @ basis.T


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m", [(4, 30), (12, 5)])  # m ≫ N (its use) and m < N
def test_woodbury_fisher_steps_equal_the_dense_solve(mode, rng, dtype, n, m):
    gradients = rng.normal(size=(n, m))
    damping = 0.3
    fisher = gradients.T @ gradients / n
    want = np.linalg.solve(fisher + damping * np.eye(m), gradients.T).T
    got = run_in_mode(mode, woodbury_fisher_steps, tf.constant(gradients, dtype), damping)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, **_tolerance(dtype, mode))
    # A tensor λ (what the adaptive damping passes) gives the same steps; it is
    # cast to the gradients' dtype.
    tensor = run_in_mode(mode, woodbury_fisher_steps, tf.constant(gradients, dtype),
                         tf.constant(damping, tf.float64))
    np.testing.assert_allclose(tensor, want, **_tolerance(dtype, mode))


def test_woodbury_refuses_a_negative_damping():
    # λ = 0 is solved in the span of the gradients (tests/newton/test_woodbury_solve.py).
    with pytest.raises(ValueError, match="damping >= 0"):
        woodbury_fisher_steps(tf.ones([2, 3]), -1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conjugate_gradient_steps_equal_per_sample_solves(mode, rng, dtype):
    n, m, damping = 5, 6, 0.1
    hessians = np.stack([_spd(rng, m) for _ in range(n)])
    gradients = rng.normal(size=(n, m))
    want = np.stack([np.linalg.solve(h + damping * np.eye(m), g)
                     for h, g in zip(hessians, gradients)])
    h = tf.constant(hessians, dtype)

    def solve(g):
        # m iterations reach the exact solve of an m×m system (in exact arithmetic).
        return conjugate_gradient_steps(lambda v: tf.einsum("nij,nj->ni", h, v), g, damping,
                                        max_iterations=4 * m, tolerance=1e-12)

    got = run_in_mode(mode, solve, tf.constant(gradients, dtype))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, **_tolerance(dtype, mode))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conjugate_gradient_falls_back_where_the_curvature_is_not_positive(mode, rng, dtype):
    # Row 0 sees a negative definite H + λI: CG takes no step there and
    # returns the scaled gradient g / max(λ, 1); row 1 is solved as usual.
    m, damping = 4, 0.5
    hessians = np.stack([-3.0 * np.eye(m), _spd(rng, m)])
    gradients = rng.normal(size=(2, m))
    h = tf.constant(hessians, dtype)
    got = run_in_mode(mode, lambda g: conjugate_gradient_steps(
        lambda v: tf.einsum("nij,nj->ni", h, v), g, damping, max_iterations=4 * m,
        tolerance=1e-12), tf.constant(gradients, dtype))
    np.testing.assert_allclose(got[0], gradients[0] / max(damping, 1.0), **_tolerance(dtype, mode))
    np.testing.assert_allclose(
        got[1], np.linalg.solve(hessians[1] + damping * np.eye(m), gradients[1]),
        **_tolerance(dtype, mode))


def _indefinite(rng, eigenvalues):
    basis, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return basis @ np.diag(eigenvalues) @ basis.T, basis


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("indefinite", ["abs", "clip"])
def test_damped_solve_equals_the_eigen_formula(mode, rng, dtype, indefinite):
    eigenvalues = np.array([-2.0, -0.5, 0.7, 1.5, 4.0])
    matrix, basis = _indefinite(rng, eigenvalues)
    rhs = rng.normal(size=(3, 5))  # three right-hand sides sharing the matrix
    damping = 0.25
    treated = np.abs(eigenvalues) if indefinite == "abs" else np.maximum(eigenvalues, 0.0)
    inverse = basis @ np.diag(1.0 / (treated + damping)) @ basis.T
    want = rhs @ inverse  # rows; the inverse is symmetric
    got = run_in_mode(mode, damped_solve, tf.constant(matrix, dtype), tf.constant(rhs, dtype),
                      damping, indefinite)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, **_tolerance(dtype, mode))
    if indefinite == "abs":  # a positive definite matrix is solved as it is
        spd = _spd(rng, 5)
        got = run_in_mode(mode, damped_solve, tf.constant(spd, dtype), tf.constant(rhs, dtype),
                          damping, indefinite)
        np.testing.assert_allclose(got, np.linalg.solve(spd + damping * np.eye(5), rhs.T).T,
                                   **_tolerance(dtype, mode))


@pytest.mark.parametrize("dtype", DTYPES)
def test_damped_solve_of_per_sample_matrices(mode, rng, dtype):
    n, m, damping = 4, 3, 0.1
    matrices = np.stack([_spd(rng, m) for _ in range(n)])
    rhs = rng.normal(size=(n, 1, m))
    want = np.stack([np.linalg.solve(a + damping * np.eye(m), b[0])[None]
                     for a, b in zip(matrices, rhs)])
    got = run_in_mode(mode, damped_solve, tf.constant(matrices, dtype), tf.constant(rhs, dtype),
                      damping)
    np.testing.assert_allclose(got, want, **_tolerance(dtype, mode))


@pytest.mark.parametrize("dtype", DTYPES)
def test_damped_solve_floors_eigenvalues_relative_to_the_largest(mode, dtype):
    # Undamped, an eigenvalue below the floor is solved as the floor, not as 0.
    eigenvalues = np.array([1e-12, 2.0])
    rhs = np.array([[1.0, 1.0]])
    got = run_in_mode(mode, damped_solve, tf.constant(np.diag(eigenvalues), dtype),
                      tf.constant(rhs, dtype), 0.0)
    floor = RELATIVE_EIGENVALUE_FLOOR * 2.0
    np.testing.assert_allclose(got, [[1.0 / floor, 0.5]], rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rank", [2, 6])  # a sketch, and a full basis
def test_low_rank_damped_solve_equals_the_completed_matrix(mode, rng, dtype, rank):
    m, damping = 6, 0.2
    basis, _ = np.linalg.qr(rng.normal(size=(m, m)))
    basis = basis[:, :rank]
    eigenvalues = rng.uniform(-3.0, 3.0, size=rank)
    eigenvalues[np.abs(eigenvalues) < 0.3] = 0.5  # away from the floor
    rhs = rng.normal(size=(3, m))
    treated = np.abs(eigenvalues)
    rest = treated.min() if rank < m else 0.0  # the complement's value ρ
    matrix = (basis @ np.diag(treated) @ basis.T
              + rest * (np.eye(m) - basis @ basis.T) + damping * np.eye(m))
    want = np.linalg.solve(matrix, rhs.T).T

    def solve(e, v, b):
        return low_rank_damped_solve((e, v), b, damping, "abs")

    got = run_in_mode(mode, solve, tf.constant(eigenvalues, dtype), tf.constant(basis, dtype),
                      tf.constant(rhs, dtype))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, **_tolerance(dtype, mode))
