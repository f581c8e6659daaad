"""The batch in output space: checked, flattened, in the solve dtype; and ``z*``.

Step (3a) works on the outputs ``y_i ∈ R^m`` of each sample (trailing axes
flattened row-major), gradient stopped, in float32 (float64 stays float64:
solves have no half-precision kernels). The target is ``z*_i = y_i - s_i``
for the Newton step ``s_i``; a sample whose step is not finite, or that is
not usable, takes no step, and non-finite outputs are kept as they are.

Example:

>>> import tensorflow as tf
>>> batch = prepare_batch(tf.zeros([2, 3]), tf.ones([2, 3], tf.float16))
>>> batch.outputs.dtype.name, batch.m
('float32', 3)
"""

import numbers
from typing import Any, NamedTuple, Optional

import numpy as np
import tensorflow as tf

from keras_newton.newton._eigen_solve import solve_dtype


class Batch(NamedTuple):
    """One batch in output space.

    Attributes:
      y_true: targets, floating ones cast to the solve dtype.
      outputs: ``[N, ...]`` outputs, gradient stopped, in the solve dtype.
      m: output entries per sample; ``size``: the static ``N`` (or None).
      dtype: the dtype of ``y_pred``, which the target gets back.
    """

    y_true: Any
    outputs: tf.Tensor
    m: int
    size: Optional[int]
    dtype: tf.DType


def _check_outputs(y_true: tf.Tensor, y_pred: tf.Tensor) -> int:
    if not y_pred.dtype.is_floating:
        raise TypeError(f"y_pred must be a floating tensor, got dtype {y_pred.dtype.name}.")
    if y_pred.shape.rank is None or y_pred.shape.rank < 2:
        raise ValueError(
            "y_pred must have a batch axis and at least one output axis "
            f"(shape [batch, ...]); got shape {y_pred.shape}. Reshape scalar "
            "outputs to [batch, 1]."
        )
    if not y_pred.shape[1:].is_fully_defined():
        raise ValueError(
            f"y_pred must have static output axes to build curvature matrices; "
            f"got shape {y_pred.shape}."
        )
    batch_true, batch_pred = y_true.shape[:1], y_pred.shape[:1]
    if y_true.shape.rank and not batch_true.is_compatible_with(batch_pred):
        raise ValueError(
            f"y_true and y_pred must have the same batch size; got shapes "
            f"{y_true.shape} and {y_pred.shape}."
        )
    return y_pred.shape[1:].num_elements()


def _is_array_like(value) -> bool:
    """A (nested) list or tuple of numbers: one array, as NumPy and Keras read it.

    Keras' ``Loss.__call__`` converts a list's numbers one by one, so scalar
    tensors count as numbers too.
    """
    if not isinstance(value, (list, tuple)):
        return False
    leaves = tf.nest.flatten(value)
    return bool(leaves) and all(
        isinstance(leaf, (numbers.Number, np.generic))
        or (tf.is_tensor(leaf) and leaf.shape.rank == 0) for leaf in leaves)


def as_tensors(value):
    """``value`` as tensors: a list of numbers becomes one tensor (not a nest of scalars).

    Keras losses take Python lists and NumPy arrays where they take tensors;
    a structure of tensors or arrays (a loss with structured targets) keeps
    its structure, each leaf converted.
    """
    if _is_array_like(value):
        return tf.convert_to_tensor(value)
    return tf.nest.map_structure(tf.convert_to_tensor, value)


def prepare_batch(y_true, y_pred) -> Batch:
    """Checks shapes and dtypes; outputs gradient-stopped in the solve dtype.

    Raises:
      TypeError: for a ragged or sparse ``y_true`` or ``y_pred``, or
        non-floating outputs.
      ValueError: for outputs without a batch and an output axis, or batch
        sizes that differ.
    """
    reject_composite(y_pred, "y_pred")
    reject_composite(y_true, "y_true")
    y_pred = as_tensors(y_pred)
    y_true = as_tensors(y_true)
    m = _check_outputs(y_true if tf.is_tensor(y_true) else y_pred, y_pred)
    dtype = solve_dtype(y_pred.dtype)
    outputs = tf.cast(tf.stop_gradient(y_pred), dtype)
    if tf.is_tensor(y_true) and y_true.dtype.is_floating:
        y_true = tf.cast(y_true, dtype)
    return Batch(y_true, outputs, m, y_pred.shape[0], y_pred.dtype)


def reject_composite(value, name: str = "y_true") -> None:
    """Raises a TypeError naming ``name`` for ragged or sparse tensors (anywhere in a nest).

    A Newton step needs ``m`` outputs per sample; a ragged batch has no
    fixed ``m`` and a sparse one no dense curvature. Pad them with
    ``.to_tensor()`` / ``tf.sparse.to_dense`` first.
    """
    for leaf in tf.nest.flatten(value, expand_composites=False):
        if isinstance(leaf, tf.RaggedTensor):
            raise TypeError(
                f"{name} is a tf.RaggedTensor (shape {leaf.shape}); Newton losses need a "
                f"dense [batch, ...] tensor with the same number of entries per sample. "
                f"Pad it first, e.g. {name}.to_tensor().")
        if isinstance(leaf, tf.SparseTensor):
            raise TypeError(
                f"{name} is a tf.SparseTensor (dense shape {leaf.shape}); Newton losses "
                f"need a dense tensor. Convert it first with tf.sparse.to_dense({name}).")


def stepped_samples(steps, usable) -> tf.Tensor:
    """``[N, 1]``: the samples that take their step (usable, finite step)."""
    return tf.logical_and(usable, tf.reduce_all(tf.math.is_finite(steps), axis=1, keepdims=True))


def moved_outputs(batch: Batch, steps, stepped) -> tf.Tensor:
    """``z* = y - s`` in the solve dtype and the outputs' shape (no step where not ``stepped``)."""
    steps = tf.where(stepped, steps, tf.zeros_like(steps))
    flat_outputs = tf.reshape(batch.outputs, [-1, batch.m])
    # Non-finite outputs have nothing sensible to move towards: keep them.
    target = tf.where(tf.math.is_finite(flat_outputs), flat_outputs - steps, flat_outputs)
    return tf.reshape(target, tf.shape(batch.outputs))


def newton_targets(batch: Batch, steps, usable) -> tf.Tensor:
    """``z* = y - s`` with the shape and dtype of ``y_pred``, gradient stopped."""
    target = moved_outputs(batch, steps, stepped_samples(steps, usable))
    return tf.stop_gradient(cast_within_range(target, batch.dtype))


def cast_within_range(target: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """Casts a finite solve-dtype target to ``dtype`` without overflowing to ±inf.

    A Newton step that is finite in float32 can exceed float16's range
    (65504; small or zero damping with a tiny curvature): the target is
    clipped to ``dtype``'s finite range, so the Newton loss stays finite and
    its gradient is that of the largest step ``dtype`` can hold. Non-finite
    entries (kept non-finite outputs) are left as they are.
    """
    if dtype.size >= target.dtype.size:
        return tf.cast(target, dtype)
    limit = tf.constant(dtype.max, target.dtype)
    clipped = tf.clip_by_value(target, -limit, limit)
    return tf.cast(tf.where(tf.math.is_finite(target), clipped, target), dtype)
