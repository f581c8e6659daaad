"""Per-sample loss derivatives in output space by nested gradient tapes.

For every sample ``i`` of a batch, the gradient ``g_i = ∇_{y_i} ℓ_i`` of the
per-sample loss with respect to the network output, and the curvature:

.. math::

    \\bar H = \\frac1N \\sum_i \\nabla^2_{y_i} \\ell_i, \\qquad
    \\bar F = \\frac1N \\sum_i g_i g_i^\\top, \\qquad
    M_i = \\nabla^2_{y_i} \\ell_i .

Cross-sample blocks of the batch Hessian are dropped: Keras losses are means
of independent per-sample terms, so those blocks are zero anyway. The mean
Hessian is formed without per-sample Hessians (one shared shift of all
samples), so its cost is ``m`` gradient-sized passes, not ``N·m``.

References:
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024 (arXiv:2410.19055).
"""

import contextlib
from typing import Callable, Optional, Tuple

import keras
import tensorflow as tf

from keras_newton.newton.curvatures import ELEMENTWISE_HESSIAN, FISHER
from keras_newton.newton._protocol import shape_errors_named
from keras_newton.newton._usable_samples import finite_rows, usable_count

# Linear losses have no second derivative path: read "no path" as zero.
ZERO = tf.UnconnectedGradients.ZERO


def per_sample_loss_fn(loss, name_shapes: bool = True
                       ) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Wraps a Keras loss or callable into ``(y_true, y_pred) -> [N]`` values.

    Keras ``Loss.call`` returns unreduced values of shape ``[N, ...]``; their
    mean over the non-batch axes is the per-sample loss, so the batch mean of
    the result equals Keras' default ``sum_over_batch_size`` reduction.
    Shape errors name ``y_true``, ``y_pred`` and their shapes
    (:func:`~keras_newton.newton._protocol.shape_errors_named`), unless
    ``name_shapes=False``: for callers that evaluate the loss on a reshaped
    batch and name the caller's shapes themselves.
    """
    call = loss.call if isinstance(loss, keras.losses.Loss) else loss

    def per_sample(y_true, y_pred):
        with shape_errors_named(loss, y_true, y_pred) if name_shapes else _no_renaming():
            values = tf.convert_to_tensor(call(y_true, y_pred))
        if values.shape.rank == 0:
            raise ValueError(
                "The wrapped loss returned a scalar; Newton losses need "
                "per-sample values of shape [batch, ...] (a Keras Loss.call "
                "or a function with no batch reduction)."
            )
        if values.shape.rank > 1:
            values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
        return values

    return per_sample


@contextlib.contextmanager
def _no_renaming():
    yield


def autodiff_derivatives(
    per_sample: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    y_true: tf.Tensor,
    y_pred: tf.Tensor,
    curvature: str,
    keep: Optional[tf.Tensor] = None,
) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
    """Per-sample gradients and the requested curvature by nested tapes.

    Args:
      per_sample: ``(y_true, y_pred) -> [N]`` per-sample loss values.
      y_true: targets, passed through unchanged.
      y_pred: outputs ``[N, ...]``; differentiated on a stop-gradient copy.
      curvature: one of :data:`keras_newton.newton.curvatures.CURVATURES`.
      keep: optional ``[N, 1]`` booleans; samples with ``False`` are left out
        of the mean Hessian (an excluded sample, see ``loss_derivatives``).

    Returns:
      ``(gradients [N, m], matrix)`` where ``matrix`` is the mean Hessian
      ``[m, m]`` for ``"hessian"`` (over the samples with a finite gradient;
      see :func:`autodiff_mean_hessian`), per-sample Hessians ``[N, m, m]``
      for ``"elementwise_hessian"`` and ``None`` for ``"fisher"``.
    """
    m = y_pred.shape[1:].num_elements()
    flat = tf.reshape(tf.stop_gradient(y_pred), [-1, m])
    gradients_at = _gradient_function(per_sample, y_true, tf.shape(y_pred))

    if curvature == FISHER:
        return gradients_at(flat), None
    if curvature == ELEMENTWISE_HESSIAN:
        with tf.GradientTape() as outer:
            outer.watch(flat)
            gradients = gradients_at(flat)
        return gradients, per_sample_hessians(outer, gradients, flat)
    gradients = gradients_at(flat)
    usable = finite_rows(gradients)
    if keep is not None:
        usable = tf.logical_and(usable, tf.reshape(keep, [-1, 1]))
    return gradients, autodiff_mean_hessian(gradients_at, flat, usable)


def per_sample_hessians(tape: tf.GradientTape, gradients: tf.Tensor,
                        flat: tf.Tensor) -> tf.Tensor:
    """``[N, m, m]``: row ``j`` of ``H_i`` is the gradient of ``g_i[j]`` in ``y_i``.

    ``tape.batch_jacobian`` would do, but it reshapes with ``-1`` and divides
    by the batch size: an empty batch ``[0, m]`` fails there (a Python
    ``ZeroDivisionError``, or an integer division by zero at run time). Here
    the ``m`` vector-Jacobian products with the unit vectors ``e_j`` are
    vectorized instead, which is the same computation for any ``N >= 0``.
    Samples are independent, so the cotangent ``e_j`` on every row gives
    each sample's own ``∂g_i[j]/∂y_i``.

    Args:
      tape: the (non-persistent) tape that watched ``flat`` while
        ``gradients`` were computed.
      gradients: ``[N, m]`` per-sample gradients.
      flat: ``[N, m]`` outputs.
    """
    unit_vectors = tf.eye(flat.shape[-1], dtype=gradients.dtype)

    def hessian_rows(unit_vector):
        cotangent = tf.broadcast_to(unit_vector, tf.shape(gradients))
        return tape.gradient(gradients, flat, output_gradients=cotangent,
                             unconnected_gradients=ZERO)

    rows = tf.vectorized_map(hessian_rows, unit_vectors)  # [m, N, m]
    return tf.transpose(rows, [1, 0, 2])


def _gradient_function(per_sample, y_true, shape):
    """``[N, m] -> [N, m]``: each sample's gradient of its own loss."""

    def gradients_at(outputs):
        with tf.GradientTape() as tape:
            tape.watch(outputs)
            values = per_sample(y_true, tf.reshape(outputs, shape))
            total = tf.reduce_sum(values)
        # Samples are independent, so the gradient of the sum holds each
        # sample's own gradient in its row.
        return tape.gradient(total, outputs, unconnected_gradients=ZERO)

    return gradients_at


def autodiff_mean_hessian(
    gradients_at: Callable[[tf.Tensor], tf.Tensor], flat: tf.Tensor, usable: tf.Tensor
) -> tf.Tensor:
    """Mean Hessian ``[m, m]`` of the ``usable`` samples, without per-sample Hessians.

    Every usable sample is shifted by one shared vector ``v``; the Jacobian
    of ``Σ_i g_i(y_i + v)`` in ``v`` at ``v = 0`` is ``Σ_{usable} H_i``, an
    ``m x m`` matrix, and no ``N`` per-sample Hessians are materialized.

    Args:
      gradients_at: ``[N, m] -> [N, m]`` per-sample gradients.
      flat: ``[N, m]`` outputs, gradient stopped.
      usable: ``[N, 1]`` booleans, normally the samples with finite gradients.
        A sample whose gradient is finite but whose Hessian is not still
        makes the mean non-finite (its Hessian is never formed on its own).
    """
    m = flat.shape[-1]
    shift = tf.zeros([m], dtype=flat.dtype)
    with tf.GradientTape() as outer:
        outer.watch(shift)
        # Left-out samples are not shifted: tf.where drops their (NaN)
        # cotangents, where multiplying by a 0/1 mask would keep 0 * NaN.
        shifted = flat + tf.where(usable, shift, tf.zeros_like(flat))
        gradient_sum = tf.reduce_sum(gradients_at(shifted), axis=0)
    hessian_sum = outer.jacobian(gradient_sum, shift, unconnected_gradients=ZERO)
    return hessian_sum / tf.maximum(usable_count(usable, flat.dtype), 1.0)
