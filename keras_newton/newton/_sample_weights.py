"""Samples with a NaN, infinite or negative sample weight are left out of a training step.

A sample weight scales a sample's term of the loss; NaN, ``±inf`` and
negative values have no meaning there, and one NaN weight makes the
reduced loss, and so every weight gradient, NaN (``NaN * 0 = NaN`` even
where the Newton step is zero). Such a sample is treated like one with a
non-finite input (:mod:`keras_newton.newton._finite_inputs`): its weight
becomes 0 for every output, and it is marked *excluded*, so
:class:`keras_newton.NewtonLossModel` also keeps it out of the batch
curvature and gives it no Newton step (the ``keep`` mask of
:func:`keras_newton.newton.target.newton_step_target`). The other samples train exactly as
on the batch without it, up to Keras' ``sum_over_batch_size`` divisor,
which still counts it.

Example:

>>> import numpy as np, tensorflow as tf
>>> weights, excluded = exclude_invalid_weights(
...     tf.constant([1.0, np.nan, -2.0, np.inf, 0.5]), None)
>>> weights.numpy().tolist(), excluded.numpy().tolist()
([1.0, 0.0, 0.0, 0.0, 0.5], [False, True, True, True, False])
"""

from typing import Optional

import tensorflow as tf


def _weight_tensors(sample_weight):
    return [tf.convert_to_tensor(w) for w in tf.nest.flatten(sample_weight) if w is not None]


def invalid_weight_rows(sample_weight) -> Optional[tf.Tensor]:
    """``[N]`` booleans: samples with a NaN, inf or negative weight for any output.

    ``None`` when there are no (floating) sample weights.
    """
    rows = []
    for weight in _weight_tensors(sample_weight):
        if not weight.dtype.is_floating or weight.shape.rank == 0:
            continue
        flat = tf.reshape(weight, [tf.shape(weight)[0], -1])
        valid = tf.logical_and(tf.math.is_finite(flat), flat >= 0)
        rows.append(tf.logical_not(tf.reduce_all(valid, axis=1)))
    if not rows:
        return None
    return tf.reduce_any(tf.stack(rows), axis=0)


def exclude_invalid_weights(sample_weight, excluded: Optional[tf.Tensor]):
    """``(sample_weight, excluded)`` with invalid-weight samples weighted 0 and marked.

    Args:
      sample_weight: ``None`` or the per-sample weights (a nest, one per
        output), each ``[N, ...]``.
      excluded: ``None`` or ``[N]`` booleans, samples already left out (a
        non-finite input row).

    Returns:
      The sample weights with every entry of an excluded sample set to 0 (in
      every output's weight), and the ``[N]`` excluded mask (``None`` when
      nothing can be excluded).
    """
    invalid = invalid_weight_rows(sample_weight)
    if invalid is None:
        return sample_weight, excluded
    excluded = invalid if excluded is None else tf.logical_or(excluded, invalid)

    def zeroed(weight):
        if weight is None:
            return None
        weight = tf.convert_to_tensor(weight)
        if weight.shape.rank == 0:
            return weight
        mask = tf.reshape(excluded, [-1] + [1] * (weight.shape.rank - 1))
        return tf.where(mask, tf.zeros_like(weight), weight)

    return tf.nest.map_structure(zeroed, sample_weight), excluded

