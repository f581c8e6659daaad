"""Ground-truth ranks and permutation matrices, with deterministic ties.

For values :math:`y \\in \\mathbb{R}^n` (last axis), the 0-based ascending
rank of item ``i`` under ``ties="stable"`` is

.. math::

    r_i = \\#\\{k : y_k < y_i\\} + \\#\\{k < i : y_k = y_i\\},

i.e. tied items keep their input order (a stable sort), and the permutation
matrix in the convention of ``keras_newton.sorting`` is
``P[..., i, j] = [r_i = j]`` (input ``i`` at sorted position ``j``).

``ties="average"`` spreads an item over all positions its tie group occupies:
with ``lo_i = #{k : y_k < y_i}`` and ``c_i = #{k : y_k = y_i}``,
``P[..., i, j] = 1 / c_i`` for ``lo_i <= j < lo_i + c_i``: the average of all
permutation matrices consistent with the order, still doubly stochastic and
independent of the input order.

Everything is computed from pairwise comparisons (``O(n^2)``), not from a
sort, so the result is identical in eager mode, ``tf.function`` and XLA.

Example:

>>> import tensorflow as tf
>>> stable_ranks(tf.constant([2.0, 1.0, 2.0])).numpy().tolist()
[1, 0, 2]

References:
  Petersen, Borgelt, Kuehne, Deussen. "Differentiable Sorting Networks for
  Scalable Sorting and Ranking Supervision", ICML 2021 (the ranking loss).
"""

from __future__ import annotations

import tensorflow as tf

TIES = ("stable", "average")


def _comparisons(values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns ``[..., i, k]`` masks ``y_k < y_i`` and ``y_k == y_i``."""
    row, col = values[..., :, None], values[..., None, :]
    return col < row, tf.equal(col, row)


def tie_bounds(values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Returns ``(lo, count)``: items strictly below ``y_i`` and the tie size."""
    less, equal = _comparisons(values)
    lo = tf.reduce_sum(tf.cast(less, tf.int32), axis=-1)
    count = tf.reduce_sum(tf.cast(equal, tf.int32), axis=-1)
    return lo, count


def stable_ranks(values: tf.Tensor) -> tf.Tensor:
    """0-based ascending ranks of the last axis; ties keep the input order."""
    values = tf.convert_to_tensor(values)
    n = values.shape[-1]
    less, equal = _comparisons(values)
    earlier = tf.linalg.band_part(tf.ones([n, n], tf.bool), -1, 0)  # k <= i
    earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(n, dtype=tf.bool)))
    before = tf.logical_or(less, tf.logical_and(equal, earlier))
    return tf.reduce_sum(tf.cast(before, tf.int32), axis=-1)


def permutation_matrix(
    values: tf.Tensor, ties: str = "stable", dtype: tf.DType = tf.float32
) -> tf.Tensor:
    """Exact ascending permutation matrix ``[..., n, n]`` of ``values [..., n]``.

    Args:
      values: True values (or ranks) of the ``n`` items, static ``n``.
      ties: ``"stable"`` (tied items keep their input order) or ``"average"``
        (uniform mass over the tie group's positions).
      dtype: Floating dtype of the result.

    Returns:
      ``P`` with ``P[..., i, j]`` the mass of input ``i`` at position ``j``.
      A row of ``values`` with a NaN has no order: its whole matrix is NaN
      (so a loss against it is NaN, never a finite number for a matrix that
      is not a permutation). ``±inf`` values sort like any other.
    """
    if ties not in TIES:
        raise ValueError(f"Unknown `ties` {ties!r}; expected one of {TIES}.")
    values = tf.convert_to_tensor(values)
    if values.shape.rank is None or values.shape.rank < 1 or values.shape[-1] is None:
        raise ValueError(
            f"`values` must have a static last axis (the items), got {values.shape}."
        )
    n = values.shape[-1]
    if ties == "stable":
        matrix = tf.one_hot(stable_ranks(values), n, dtype=dtype)
    else:
        lo, count = tie_bounds(values)
        positions = tf.range(n)
        inside = tf.logical_and(
            positions >= lo[..., None], positions < (lo + count)[..., None]
        )
        matrix = tf.cast(inside, dtype) / tf.cast(count, dtype)[..., None]
    return nan_where_unordered(values, matrix)


def nan_where_unordered(values: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """NaN matrices for rows of ``values`` holding a NaN (comparisons are all False)."""
    if not values.dtype.is_floating:
        return matrix
    unordered = tf.reduce_any(tf.math.is_nan(values), axis=-1)[..., None, None]
    return tf.where(unordered, tf.constant(float("nan"), matrix.dtype), matrix)
