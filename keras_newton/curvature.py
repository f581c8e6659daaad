"""Per-sample loss derivatives in output space, and the curvature protocol.

Newton losses need, for every sample ``i`` of a batch, the gradient
``g_i = ∇_{y_i} ℓ_i`` of the per-sample loss with respect to the network output
and a curvature matrix built from second derivatives or from the gradients:

.. math::

    \\bar H = \\frac1N \\sum_i \\nabla^2_{y_i} \\ell_i, \\qquad
    \\bar F = \\frac1N \\sum_i g_i g_i^\\top, \\qquad
    M_i = \\nabla^2_{y_i} \\ell_i .

Cross-sample blocks of the batch Hessian are dropped: Keras losses are means
of independent per-sample terms, so those blocks are zero anyway.

**Non-finite samples.** A sample whose gradient (or, where per-sample
Hessians are formed, whose Hessian) is not finite is left out of the batch
means: ``H̄`` and ``F̄`` average over the usable samples only, so one NaN
output does not poison the curvature of the whole batch.

**Curvature protocol.** A loss that autodiff cannot differentiate twice (a
Monte-Carlo estimator, a non-differentiable algorithm) supplies its own
estimates by defining::

    def per_sample_derivatives(self, y_true, y_pred, hessian: bool):
        return gradients, hessians   # [N, m] and [N, m, m] (or None)

where ``m`` is the number of output entries per sample (``y_pred`` flattened
row-major) and the per-sample loss is the mean over the non-batch axes of
``loss.call(y_true, y_pred)``. A loss that can only provide gradients sets the
class attribute ``provides_hessian = False``; it then supports
``curvature="fisher"`` only. This mirrors K-FAC's loss functions, which expose
curvature with respect to the model outputs (Martens & Grosse, 2015).

References:
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024 (arXiv:2410.19055).
"""

import contextlib
import re
from typing import Callable, Optional, Tuple

import keras
import tensorflow as tf

HESSIAN = "hessian"
FISHER = "fisher"
ELEMENTWISE_HESSIAN = "elementwise_hessian"
CURVATURES = (HESSIAN, FISHER, ELEMENTWISE_HESSIAN)
# Linear losses have no second derivative path: read "no path" as zero.
ZERO = tf.UnconnectedGradients.ZERO


def validate_curvature(curvature: str) -> str:
    """Returns ``curvature`` if it names a supported curvature, else raises."""
    if curvature not in CURVATURES:
        raise ValueError(
            f"Unknown curvature={curvature!r}; expected one of {CURVATURES}."
        )
    return curvature


def provides_curvature(loss) -> bool:
    """Whether ``loss`` implements the curvature protocol."""
    return callable(getattr(loss, "per_sample_derivatives", None))


def check_protocol_supports(loss, curvature: str) -> None:
    """Raises a ValueError if a protocol loss cannot supply ``curvature``."""
    if (
        provides_curvature(loss)
        and curvature != FISHER
        and not getattr(loss, "provides_hessian", True)
    ):
        raise ValueError(
            f"curvature={curvature!r} needs per-sample Hessians, which "
            f"{type(loss).__name__} cannot provide (it estimates gradients "
            f"only). Use curvature='fisher' instead."
        )


def loss_name(loss) -> str:
    """A readable name of a loss name, Keras loss, function or callable object."""
    if isinstance(loss, str):
        return loss
    return (
        getattr(loss, "name", None)
        or getattr(loss, "__name__", None)
        or type(loss).__name__
    )


# Errors TensorFlow and Keras raise for tensors of the wrong shape: ValueError
# at trace time, InvalidArgumentError when an eager op runs.
_SHAPE_WORDS = re.compile(r"shape|rank|dimension|broadcast|squeeze|reshape", re.IGNORECASE)


def _shapes(structure):
    return tf.nest.map_structure(lambda t: tuple(getattr(t, "shape", ())), structure)


@contextlib.contextmanager
def shape_errors_named(loss, y_true, y_pred):
    """Re-raises the wrapped loss's shape errors as a ValueError naming both inputs.

    Keras and TensorFlow report a mismatch deep inside an op (``Incompatible
    shapes: [4,3] vs. [4,4] [Op:Sub]`` or, at trace time, an unnamed node);
    this names ``y_true``, ``y_pred``, their shapes and the loss instead.
    Errors that do not mention shapes pass through unchanged.

    Example:

    >>> import tensorflow as tf
    >>> try:
    ...     with shape_errors_named("mse", tf.zeros([4, 3]), tf.zeros([4, 4])):
    ...         raise ValueError("Incompatible shapes: [4,3] vs. [4,4]")
    ... except ValueError as error:
    ...     print(str(error).split(":")[0])
    y_true of shape (4, 3) and y_pred of shape (4, 4) do not fit the loss 'mse'
    """
    try:
        yield
    except (ValueError, tf.errors.InvalidArgumentError) as error:
        message = getattr(error, "message", None) or str(error)
        if not _SHAPE_WORDS.search(message):
            raise
        # Eager op errors start with "{{function_node ...}}": noise here.
        message = re.sub(r"\{\{[^}]*\}\}\s*", "", message).strip()
        raise ValueError(
            f"y_true of shape {_shapes(y_true)} and y_pred of shape "
            f"{_shapes(y_pred)} do not fit the loss {loss_name(loss)!r}: {message}"
        ) from error


def per_sample_loss_fn(loss) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Wraps a Keras loss or callable into ``(y_true, y_pred) -> [N]`` values.

    Keras ``Loss.call`` returns unreduced values of shape ``[N, ...]``; their
    mean over the non-batch axes is the per-sample loss, so the batch mean of
    the result equals Keras' default ``sum_over_batch_size`` reduction.
    """
    call = loss.call if isinstance(loss, keras.losses.Loss) else loss

    def per_sample(y_true, y_pred):
        with shape_errors_named(loss, y_true, y_pred):
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


def finite_rows(values: tf.Tensor) -> tf.Tensor:
    """``[N, 1]`` booleans: which samples of ``values`` ``[N, ...]`` are all finite."""
    flat = tf.reshape(values, [tf.shape(values)[0], -1])
    return tf.reduce_all(tf.math.is_finite(flat), axis=1, keepdims=True)


def usable_count(usable: tf.Tensor, dtype=tf.float32) -> tf.Tensor:
    """The number of usable samples (``True`` rows of ``usable``) as a float."""
    return tf.reduce_sum(tf.cast(usable, dtype))


def masked_mean(matrices: tf.Tensor, usable: tf.Tensor) -> tf.Tensor:
    """Mean of ``matrices`` ``[N, m, m]`` over the usable samples only.

    ``tf.where`` (not a product with a 0/1 mask) drops the left-out samples,
    since ``0 * NaN`` is NaN. With no usable sample the mean is zero.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> matrices = tf.constant([[[1.0]], [[np.nan]], [[3.0]]])
    >>> masked_mean(matrices, finite_rows(matrices)).numpy()
    array([[2.]], dtype=float32)
    """
    kept = tf.where(usable[..., None], matrices, tf.zeros_like(matrices))
    count = usable_count(usable, matrices.dtype)
    return tf.reduce_sum(kept, axis=0) / tf.maximum(count, 1.0)


def autodiff_derivatives(
    per_sample: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    y_true: tf.Tensor,
    y_pred: tf.Tensor,
    curvature: str,
) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
    """Per-sample gradients and the requested curvature by nested tapes.

    Args:
      per_sample: ``(y_true, y_pred) -> [N]`` per-sample loss values.
      y_true: targets, passed through unchanged.
      y_pred: outputs ``[N, ...]``; differentiated on a stop-gradient copy.
      curvature: one of :data:`CURVATURES`.

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
        return gradients, outer.batch_jacobian(gradients, flat, unconnected_gradients=ZERO)
    gradients = gradients_at(flat)
    return gradients, autodiff_mean_hessian(gradients_at, flat, finite_rows(gradients))


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
