"""Damped, safeguarded solves ``(M + λI)^{-1} g`` for Newton steps.

The curvature ``M`` is symmetrized and eigendecomposed, ``M = V diag(e) Vᵀ``,
and the step is ``V diag(1 / d(e)) Vᵀ g`` with the damped eigenvalues

.. math::

    d(e) = \\max\\big(\\,t(e) + λ,\\; \\epsilon \\max_k |e_k|\\,\\big),
    \\qquad t(e) = |e| \\;(\\text{"abs"}) \\text{ or } \\max(e, 0) \\;(\\text{"clip"}).

For positive semi-definite ``M`` both choices give exactly the Tikhonov-damped
Newton step of the paper. For indefinite ``M`` (non-convex losses) ``"abs"``
is the saddle-free Newton step (Dauphin et al., 2014) and ``"clip"`` treats
negative-curvature directions as flat (step ``g/λ`` there). The relative floor
``ε max|e|`` keeps ``λ = 0`` with a singular ``M`` finite.

**Low-rank solve.** For an eigen-factorization ``(e, V)`` with fewer
columns than rows (a sketch, :mod:`keras_newton.newton._sketch`), directions
outside ``span(V)`` get the curvature ``ρ = min_k t(e_k)``, the least
curvature the sketch saw: conservative, since the unseen spectrum lies mostly
below the kept one, and a smaller ``ρ`` would give near-``g/λ`` steps there:

.. math::

    (\\bar H + λI)^{-1} g \\approx V\\,\\mathrm{diag}(1/d(t(e)))\\,V^\\top g
    + (g - V V^\\top g) / d(ρ).

``tf.linalg.cholesky`` returns NaN silently on a non-PD matrix and
``tf.debugging`` asserts vanish under XLA, hence the eigendecomposition. Solves
run in float32 (float64 stays float64): there are no bfloat16 kernels, and
float16 ones exist only under XLA.
"""

from typing import Tuple

import numpy as np
import tensorflow as tf

INDEFINITE_MODES = ("abs", "clip")
RELATIVE_EIGENVALUE_FLOOR = 1e-6
# (eigenvalues [r], eigenvectors [m, r]) of a curvature; r = m when exact.
Factorization = Tuple[tf.Tensor, tf.Tensor]


def solve_dtype(dtype: tf.DType) -> tf.DType:
    """The dtype a solve runs in: float64 stays, everything else is float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def validate_indefinite(indefinite: str) -> str:
    if indefinite not in INDEFINITE_MODES:
        raise ValueError(
            f"Unknown indefinite={indefinite!r}; expected one of {INDEFINITE_MODES}."
        )
    return indefinite


def finite_eigh(matrix: tf.Tensor):
    """``tf.linalg.eigh`` of ``[..., m, m]`` that never sees a non-finite matrix.

    Eager CPU ``eigh`` raises ``InvalidArgumentError`` on NaN or inf entries
    (XLA's returns NaN): a matrix that is not finite is decomposed as zero
    here and its eigenvalues are set to NaN, so the callers' finiteness
    checks (a step that is not finite is not taken) act the same in every mode.
    """
    finite = tf.reduce_all(tf.math.is_finite(matrix), axis=[-2, -1])
    safe = tf.where(finite[..., None, None], matrix, tf.zeros_like(matrix))
    eigenvalues, eigenvectors = tf.linalg.eigh(safe)
    nan = tf.constant(np.nan, eigenvalues.dtype)
    return tf.where(finite[..., None], eigenvalues, nan), eigenvectors


def damped_solve(
    matrix: tf.Tensor,
    rhs: tf.Tensor,
    damping: float,
    indefinite: str = "abs",
) -> tf.Tensor:
    """Solves ``(matrix + damping I) x = rhs`` with eigenvalue safeguards.

    Args:
      matrix: ``[..., m, m]`` curvature; symmetrized here.
      rhs: ``[..., k, m]`` right-hand sides as rows (``k`` may be the batch
        sharing one matrix, or 1 for per-sample matrices).
      damping: Tikhonov damping ``λ >= 0``.
      indefinite: ``"abs"`` or ``"clip"``, how negative eigenvalues are treated.

    Returns:
      ``[..., k, m]`` solutions, one per row of ``rhs``.
    """
    matrix = 0.5 * (matrix + tf.linalg.matrix_transpose(matrix))
    eigenvalues, eigenvectors = finite_eigh(matrix)
    if indefinite == "abs":
        curvature = tf.abs(eigenvalues)
    else:
        curvature = tf.nn.relu(eigenvalues)
    largest = tf.reduce_max(tf.abs(eigenvalues), axis=-1, keepdims=True)
    floor = RELATIVE_EIGENVALUE_FLOOR * largest
    if tf.is_tensor(damping):
        damping = tf.cast(damping, matrix.dtype)
    else:  # tf.constant keeps a Python float's float64 precision
        damping = tf.constant(damping, matrix.dtype)
    damped = tf.maximum(curvature + damping, floor)
    # Only reached when matrix and damping are both exactly zero.
    damped = tf.maximum(damped, np.finfo(matrix.dtype.as_numpy_dtype).tiny)
    # rows of rhs in the eigenbasis: [..., k, m] x [..., m, m]
    coefficients = tf.matmul(rhs, eigenvectors) / damped[..., None, :]
    return tf.matmul(coefficients, eigenvectors, transpose_b=True)


def dense_factorization(matrix: tf.Tensor) -> Factorization:
    """Full eigendecomposition ``(e [m], V [m, m])`` of a symmetrized ``m×m`` matrix."""
    matrix = 0.5 * (matrix + tf.transpose(matrix))
    return finite_eigh(matrix)


def low_rank_damped_solve(
    factorization: Factorization, rhs: tf.Tensor, damping: float, indefinite: str = "abs"
) -> tf.Tensor:
    """``(V diag(e) Vᵀ + ρ(I - VVᵀ) + λI)^{-1}`` applied to rows of ``rhs`` ``[k, m]``.

    ``ρ = min_k t(e_k)`` when ``V`` has fewer columns than rows; for a full
    basis the complement is empty and this is
    :func:`damped_solve`.
    """
    eigenvalues, eigenvectors = factorization
    rhs = tf.convert_to_tensor(rhs)
    dtype = rhs.dtype
    eigenvalues = tf.cast(eigenvalues, dtype)
    eigenvectors = tf.cast(eigenvectors, dtype)
    transformed = tf.abs(eigenvalues) if indefinite == "abs" else tf.nn.relu(eigenvalues)
    damping = tf.cast(damping, dtype) if tf.is_tensor(damping) else tf.constant(damping, dtype)
    floor = RELATIVE_EIGENVALUE_FLOOR * tf.reduce_max(tf.abs(eigenvalues))
    tiny = np.finfo(dtype.as_numpy_dtype).tiny

    def damped(value):
        return tf.maximum(tf.maximum(value + damping, floor), tiny)

    coefficients = tf.matmul(rhs, eigenvectors)  # [k, r]
    step = tf.matmul(coefficients / damped(transformed), eigenvectors, transpose_b=True)
    if eigenvectors.shape[-1] < eigenvectors.shape[-2]:
        residual = rhs - tf.matmul(coefficients, eigenvectors, transpose_b=True)
        step += residual / damped(tf.reduce_min(transformed))
    return step
