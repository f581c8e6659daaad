"""Empirical-Fisher Newton steps for many outputs via the Woodbury identity.

The empirical Fisher of a batch ``G ∈ R^{N×m}`` of per-sample gradients,
``F = GᵀG / N``, has rank at most ``N``. For ``m ≫ N`` the ``m × m`` solve is
replaced by an ``N × N`` one:

.. math::

    (F + λI_m)^{-1} = \\frac1λ\\Big(I_m - Gᵀ (NλI_N + GGᵀ)^{-1} G\\Big),

so the steps of all samples, as rows, are
``S = (G - K (K + NλI)^{-1} G) / λ`` with the kernel ``K = GGᵀ``. Memory is
``O(N·m)`` instead of ``O(m²)``; it needs ``λ > 0``.

Under ``tf.distribute`` the gradients of all replicas are gathered first, so
the Fisher is that of the global batch (as in the dense path).

References:
  Petersen et al., "Newton Losses", NeurIPS 2024, arXiv:2410.19055.
  Woodbury, "Inverting modified matrices", 1950.
"""

import tensorflow as tf

from keras_newton.newton._distribution import global_batch_rows


def woodbury_fisher_steps(gradients: tf.Tensor, damping: float) -> tf.Tensor:
    """Rows ``(F + λI)^{-1} g_i`` for the empirical Fisher of ``gradients``.

    Args:
      gradients: ``[N, m]`` per-sample gradients of this replica.
      damping: ``λ > 0`` (a float or a scalar tensor).

    Returns:
      ``[N, m]`` Newton steps, one row per local sample.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> g = tf.constant(np.random.default_rng(0).normal(size=(4, 1000)))
    >>> woodbury_fisher_steps(g, 0.1).shape
    TensorShape([4, 1000])
    """
    if not tf.is_tensor(damping) and damping <= 0:
        raise ValueError(
            f"The Woodbury Fisher solve needs damping > 0, got damping={damping}."
        )
    # A tensor λ (adaptive damping) is positive by construction.
    damping = (tf.cast(damping, gradients.dtype) if tf.is_tensor(damping)
               else tf.constant(damping, gradients.dtype))
    everyone = global_batch_rows(gradients)
    count = tf.cast(tf.shape(everyone)[0], gradients.dtype)
    # Local rows against all rows: the local block of G (F + λI)^-1 is
    # (G_loc - K_loc,all (K + NλI)^-1 G) / λ.
    kernel = tf.matmul(everyone, everyone, transpose_b=True)
    local_kernel = tf.matmul(gradients, everyone, transpose_b=True)
    # K + NλI is positive definite for λ > 0 (K is a Gram matrix), so a
    # Cholesky solve is safe here; it is also more accurate than XLA's eigh.
    shifted = kernel + damping * count * tf.eye(tf.shape(kernel)[0], dtype=kernel.dtype)
    solved = tf.linalg.cholesky_solve(tf.linalg.cholesky(shifted), everyone)
    correction = tf.matmul(local_kernel, solved)
    return (gradients - correction) / damping
