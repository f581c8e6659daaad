"""The scale ``κ`` of a batch curvature: its root-mean-square eigenvalue.

Adaptive damping (:mod:`keras_newton.newton.adaptive_damping`) keeps ``λ``
relative to the curvature, ``λ = r · κ``, with

.. math::

    κ = \\frac{\\lVert M \\rVert_F}{\\sqrt m}
      = \\Big(\\frac1m \\sum_k e_k^2\\Big)^{1/2},

the root-mean-square eigenvalue of ``M`` (``m×m``). It is defined for
indefinite ``M`` (unlike the mean eigenvalue, the trace over ``m``, which
can vanish) and cheap for every form a solver consumes:

* a dense ``H̄`` or ``F̄``: ``‖M‖_F / √m`` directly;
* element-wise Hessians ``H_i``: the root of the batch mean of
  ``‖H_i‖_F² / m`` (all-reduced over replicas);
* an eigen-factorization ``(e, V)``: ``(Σ e_k² / m)^{1/2}``;
* the Woodbury factor (``F̄ = GᵀG / k``): ``‖G Gᵀ‖_F / (k √m)``, from the
  ``N×N`` kernel of the gathered gradients;
* Hessian-vector products (CG): ``E‖H v‖² = ‖H‖_F² / m`` for a Rademacher
  vector ``v`` scaled by ``1/√m`` (Hutchinson, 1989), one product per sample.

A scale that is not finite is returned as 0, as is the scale of a batch
with no usable sample or of a loss with no curvature there (a saturated
softmax): the adaptive rule then takes ``λ`` from its trust radius,
``λ >= max_i ‖g_i‖ / Δ``
(:func:`keras_newton.newton.adaptive_damping.trust_region_damping`), a
floor that scales with the loss, instead of a constant. (An earlier rule
replaced 0 by 1, so ``λ`` jumped up again where ``κ`` underflowed: a
smaller curvature could give a smaller step.)

Example:

>>> import tensorflow as tf
>>> from keras_newton.newton._estimators import DenseCurvature
>>> float(curvature_scale(DenseCurvature(tf.eye(4) * 3.0, True), None))
3.0
"""

import tensorflow as tf

from keras_newton.newton._distribution import global_batch_mean, global_batch_rows
from keras_newton.newton._estimators import (
    DenseCurvature,
    EigenCurvature,
    FisherFactor,
    HessianProducts,
)
from keras_newton.newton._usable_samples import usable_count

# Fixed probe seed: every replica and every step draws the same Rademacher
# signs, so the scale of the CG path is deterministic.
PROBE_SEED = (20240, 3)


def _mean_square_eigenvalue(curvature, usable) -> tf.Tensor:
    if isinstance(curvature, EigenCurvature):
        m = tf.cast(tf.shape(curvature.eigenvectors)[0], curvature.eigenvalues.dtype)
        return tf.reduce_sum(tf.square(curvature.eigenvalues)) / m
    if isinstance(curvature, FisherFactor):
        everyone = global_batch_rows(curvature.gradients)
        total = tf.cast(tf.shape(everyone)[0], everyone.dtype)
        m = tf.cast(tf.shape(everyone)[1], everyone.dtype)
        kernel = tf.matmul(everyone, everyone, transpose_b=True)
        return tf.reduce_sum(tf.square(kernel)) / (tf.square(total) * m)
    if isinstance(curvature, HessianProducts):
        raise TypeError("HessianProducts need the gradients' shape; see curvature_scale.")
    matrix = curvature.matrix
    m = tf.cast(tf.shape(matrix)[-1], matrix.dtype)
    if matrix.shape.rank == 3:  # one matrix per sample: a batch mean
        per_sample = tf.reduce_sum(tf.square(matrix), axis=[1, 2]) / m
        mask = tf.cast(tf.reshape(usable, [-1]), matrix.dtype)
        count = usable_count(usable, matrix.dtype)
        local = tf.reduce_sum(per_sample * mask) / tf.maximum(count, 1.0)
        return global_batch_mean(local, count)
    return tf.reduce_sum(tf.square(matrix)) / m


def curvature_scale(curvature, gradients, usable=None) -> tf.Tensor:
    """``κ``, the root-mean-square eigenvalue of ``curvature`` (see module).

    Args:
      curvature: a curvature from
        :func:`keras_newton.newton._estimators.estimate_curvature`.
      gradients: ``[N, m]`` per-sample gradients (their shape and dtype size
        the probe of the matrix-free path; may be ``None`` otherwise).
      usable: ``[N, 1]`` booleans, the samples element-wise Hessians average.

    Returns:
      A finite scalar ``>= 0`` in the curvature's dtype (0 where it is not finite).
    """
    if isinstance(curvature, HessianProducts):
        m = gradients.shape[-1]
        signs = tf.random.stateless_uniform(tf.shape(gradients), PROBE_SEED, 0, 2, tf.int32)
        probe = (2.0 * tf.cast(signs, gradients.dtype) - 1.0) / tf.sqrt(
            tf.constant(float(m), gradients.dtype))
        squares = tf.reduce_sum(tf.square(curvature.product(probe)), axis=1)
        if usable is None:
            usable = tf.ones_like(squares[:, None], tf.bool)
        mask = tf.cast(tf.reshape(usable, [-1]), gradients.dtype)
        count = usable_count(usable, gradients.dtype)
        mean_square = global_batch_mean(
            tf.reduce_sum(tf.where(mask > 0, squares, 0.0)) / tf.maximum(count, 1.0), count)
    else:
        if usable is None and isinstance(curvature, DenseCurvature):
            usable = tf.ones([tf.shape(curvature.matrix)[0], 1], tf.bool)
        mean_square = _mean_square_eigenvalue(curvature, usable)
    scale = tf.sqrt(mean_square)
    return tf.where(tf.math.is_finite(scale), scale, tf.zeros_like(scale))
