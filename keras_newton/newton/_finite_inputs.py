"""Samples with non-finite inputs are left out of a training step before the forward pass.

A Newton loss sends a zero output gradient to a sample whose output is NaN,
but the backward pass still multiplies that zero by the sample's NaN
activations (``0 * NaN = NaN``), so one NaN input row makes every weight
gradient NaN. Replacing the row by zeros *before* the forward pass, with
sample weight 0, keeps it out of the step entirely: the other samples train
as if it were not there, and a ``LossScaleOptimizer`` sees non-finite
gradients only where finite data overflow (what its scale is for), instead
of halving its scale on every batch that holds a NaN row.

Example:

>>> import numpy as np, tensorflow as tf
>>> x = tf.constant([[1.0, 2.0], [np.nan, 0.0]])
>>> clean, weight = drop_non_finite_rows(x, None)
>>> clean.numpy().tolist(), weight.numpy().tolist()
([[1.0, 2.0], [0.0, 0.0]], [1.0, 0.0])
"""

import tensorflow as tf


def _floating(structure):
    return [t for t in tf.nest.flatten(structure) if tf.is_tensor(t) and t.dtype.is_floating
            and t.shape.rank is not None and t.shape.rank >= 1]


def finite_input_rows(x):
    """``[N]`` booleans: samples whose every floating input entry is finite.

    ``None`` when ``x`` holds no floating tensor with a batch axis (integer
    token ids, say), where there is nothing to check.
    """
    tensors = _floating(x)
    if not tensors:
        return None
    rows = [tf.reduce_all(tf.math.is_finite(tf.reshape(t, [tf.shape(t)[0], -1])), axis=1)
            for t in tensors]
    return tf.reduce_all(tf.stack(rows), axis=0)


def _zero_rows(tensor, keep):
    if not (tf.is_tensor(tensor) and tensor.dtype.is_floating and tensor.shape.rank):
        return tensor
    mask = tf.reshape(keep, [-1] + [1] * (tensor.shape.rank - 1))
    return tf.where(mask, tensor, tf.zeros_like(tensor))


def _weighted(sample_weight, weight):
    if sample_weight is None:
        return weight

    def times_weight(value):
        value = tf.convert_to_tensor(value)
        mask = tf.reshape(weight, [-1] + [1] * max(value.shape.rank - 1, 0))
        return tf.where(mask > 0, value, tf.zeros_like(value))

    return tf.nest.map_structure(times_weight, sample_weight)


def drop_non_finite_rows(x, sample_weight):
    """``(x, sample_weight)`` with non-finite input rows zeroed and weighted 0.

    Args:
      x: the inputs of a batch (a tensor or a nest of tensors with a leading
        batch axis); non-floating tensors pass through.
      sample_weight: ``None``, or per-sample weights (a nest, one per
        output).

    Returns:
      ``x`` with every floating tensor's left-out rows set to zero, and the
      sample weights with those rows set to zero (a ``[N]`` float32 0/1
      weight when ``sample_weight`` is ``None``). Unchanged when ``x`` holds
      no floating tensor.
    """
    keep = finite_input_rows(x)
    if keep is None:
        return x, sample_weight
    x = tf.nest.map_structure(lambda t: _zero_rows(t, keep), x)
    return x, _weighted(sample_weight, tf.cast(keep, tf.float32))
