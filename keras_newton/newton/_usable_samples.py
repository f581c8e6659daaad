"""Which samples enter the batch curvature: those with finite derivatives.

A sample whose gradient (or, where per-sample Hessians are formed, whose
Hessian) is not finite is left out of the batch means: ``H̄`` and ``F̄``
average over the usable samples only, so one NaN output does not poison the
curvature of the whole batch; such a sample takes no step.

Example:

>>> import numpy as np, tensorflow as tf
>>> finite_rows(tf.constant([[1.0, 2.0], [np.nan, 0.0]])).numpy().ravel()
array([ True, False])
"""

import tensorflow as tf


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
