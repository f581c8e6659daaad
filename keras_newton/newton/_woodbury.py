"""Empirical-Fisher Newton steps for many outputs, solved in the span of the gradients.

The empirical Fisher of a batch of per-sample gradients ``G ∈ R^{N×m}`` (one
row per sample), ``F = GᵀG / N``, has rank at most ``N``. For ``m ≫ N`` the
``m × m`` solve is replaced by an ``N × N`` one. Every gradient ``g_i`` lies
in the row space of ``G``, so the step can be solved there. With the
eigendecomposition of the kernel (Gram matrix) ``K = GGᵀ = U diag(e) Uᵀ``,
the thin SVD is ``G = U diag(√e) Vᵀ`` and ``F = V diag(e/N) Vᵀ``; hence

.. math::

    (F + λI)^{-1} g_i = V \\,\\mathrm{diag}\\Big(\\frac{\\sqrt{e}}{d}\\Big) U_iᵀ,
    \\qquad
    S = U \\,\\mathrm{diag}(1/d)\\, Uᵀ G = (K/N + λI)^{-1} G

for the steps of all samples as rows (the "push-through" identity
``(GᵀG/N + λI)^{-1}Gᵀ = Gᵀ(GGᵀ/N + λI)^{-1}``), with the damped eigenvalues
``d_k = e_k / N + λ``. Nothing is divided by ``λ``, so the step is exact for
every ``λ ≥ 0``; the textbook Woodbury form
``(G - K (K + NλI)^{-1} G) / λ`` cancels catastrophically for small ``λ``.

``λ = 0`` and a singular Fisher follow the dense eigen-solve
(:mod:`keras_newton.newton._eigen_solve`): ``d_k`` is floored at
``10⁻⁶ max_k e_k / N``. Directions with ``e_k`` at rounding level
(``e_k ≤ N ε max e``: zero, repeated or left-out gradients) carry no part of
any ``g_i`` in exact arithmetic and are dropped, so rounding noise there is
not amplified by ``1/d``; this is the pseudo-inverse the dense solve
computes in exact arithmetic. Memory is ``O(N·m)`` instead of ``O(m²)``.

Under ``tf.distribute`` the gradients of all replicas are gathered first, so
the Fisher is that of the global batch (as in the dense path); each replica
keeps the steps of its own samples.

References:
  Petersen et al., "Newton Losses", NeurIPS 2024, arXiv:2410.19055.
  Woodbury, "Inverting modified matrices", 1950.
  Golub & Van Loan, "Matrix Computations", 4th ed., 2013 (SVD, numerical rank).
"""

import numpy as np
import tensorflow as tf

from keras_newton.newton._distribution import global_batch_rows, local_rows_offset
from keras_newton.newton._eigen_solve import RELATIVE_EIGENVALUE_FLOOR, finite_eigh


def woodbury_fisher_steps(gradients: tf.Tensor, damping) -> tf.Tensor:
    """Rows ``(F + λI)^{-1} g_i`` for the empirical Fisher of ``gradients``.

    Args:
      gradients: ``[N, m]`` per-sample gradients of this replica.
      damping: ``λ >= 0`` (a float or a scalar tensor).

    Returns:
      ``[N, m]`` Newton steps, one row per local sample. If the kernel
      ``GGᵀ`` is not finite (overflow) the rows are the gradients themselves,
      the fallback of the dense solves.

    Raises:
      ValueError: for a Python ``damping < 0``.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> g = tf.constant(np.random.default_rng(0).normal(size=(4, 1000)))
    >>> woodbury_fisher_steps(g, 0.1).shape
    TensorShape([4, 1000])
    >>> bool(tf.reduce_all(tf.math.is_finite(woodbury_fisher_steps(g, 0.0))))
    True
    """
    if not tf.is_tensor(damping) and damping < 0:
        raise ValueError(
            f"The Woodbury Fisher solve needs damping >= 0, got damping={damping}."
        )
    dtype = gradients.dtype
    # tf.constant keeps a Python float's precision (and its denormals).
    damping = tf.cast(damping, dtype) if tf.is_tensor(damping) else tf.constant(damping, dtype)
    everyone = global_batch_rows(gradients)
    count = tf.cast(tf.shape(everyone)[0], dtype)
    kernel = tf.matmul(everyone, everyone, transpose_b=True)
    kernel = 0.5 * (kernel + tf.transpose(kernel))
    eigenvalues, eigenvectors = finite_eigh(kernel)
    ok = tf.reduce_all(tf.math.is_finite(eigenvalues))
    eigenvalues = tf.where(ok, eigenvalues, tf.zeros_like(eigenvalues))
    largest = tf.reduce_max(tf.abs(eigenvalues))
    # e_k at rounding level of K: a null direction of G (its part of any g_i
    # is rounding noise, which 1/d would amplify).
    epsilon = np.finfo(dtype.as_numpy_dtype).eps
    kept = eigenvalues > count * epsilon * largest
    fisher_eigenvalues = eigenvalues / count
    damped = tf.maximum(fisher_eigenvalues + damping,
                        RELATIVE_EIGENVALUE_FLOOR * largest / count)
    damped = tf.maximum(damped, np.finfo(dtype.as_numpy_dtype).tiny)
    inverse = tf.where(kept, 1.0 / damped, tf.zeros_like(damped))

    def solve(rows):  # U diag(1/d) Uᵀ rows, the kept directions only
        return tf.matmul(eigenvectors, inverse[:, None] * tf.matmul(
            eigenvectors, rows, transpose_a=True))

    steps = solve(everyone)
    # One step of iterative refinement against the operator the floored
    # solve inverts, K/N + λI + U diag(d - e/N - λ) Uᵀ: eigenvectors are
    # less accurate than K (XLA's Jacobi eigh stops near float32 accuracy
    # even in float64), the residual is computed from K itself.
    floor_shift = tf.where(kept, damped - fisher_eigenvalues - damping,
                           tf.zeros_like(damped))
    applied = (tf.matmul(kernel, steps) / count + damping * steps
               + tf.matmul(eigenvectors, floor_shift[:, None] * tf.matmul(
                   eigenvectors, steps, transpose_a=True)))
    steps += solve(everyone - applied)
    # This replica's rows of the steps of the global batch.
    local = tf.shape(gradients)[0]
    steps = tf.slice(steps, [local_rows_offset(local), 0], [local, tf.shape(steps)[1]])
    return tf.where(ok, steps, gradients)
