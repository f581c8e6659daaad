"""Ranking metrics: exact match of the ordering and element-wise rank accuracy.

For predicted scores ``s`` and true values ``y`` of ``n`` items (last axis),
let ``r_i`` be the 0-based ascending rank of item ``i`` under ``s`` (ties in
``s`` keep the input order, see ``sorting.permutations``) and
``[lo_i, lo_i + c_i)`` the block of positions that items equal to ``y_i``
occupy in the true order. Item ``i`` is *correctly ranked* when

.. math::

    lo_i \\le r_i < lo_i + c_i .

Without ties in ``y`` this is ``r_i`` equal to the true rank; with ties, any
order among tied items counts as correct (the true order does not define it).

* ``elementwise_rank_accuracy``: fraction of correctly ranked items.
* ``ordering_exact_match``: 1 if every item is correctly ranked, else 0.

Both return per-sample values over the leading axes; the Keras metric classes
average them over all samples seen, and plug into ``compile(metrics=...)``.

Example:

>>> import numpy as np
>>> y_true = np.array([[1.0, 2.0, 3.0]])
>>> float(elementwise_rank_accuracy(y_true, np.array([[0.1, 0.3, 0.2]]))[0])
0.3333333432674408

References:
  Petersen, Borgelt, Kuehne, Deussen. "Differentiable Sorting Networks for
  Scalable Sorting and Ranking Supervision", ICML 2021 (the "acc_em" and
  "acc_ew" metrics of the 4-digit MNIST ranking benchmark).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_newton.sorting.permutations import stable_ranks
from keras_newton.sorting.permutations import tie_bounds


def _correctly_ranked(y_true, y_pred) -> tf.Tensor:
    y_true = tf.convert_to_tensor(y_true)
    y_pred = tf.convert_to_tensor(y_pred)
    if not y_true.shape.is_compatible_with(y_pred.shape):
        raise ValueError(
            "`y_true` (true values) and `y_pred` (scores) must have the same "
            f"shape [..., n]; got {y_true.shape} and {y_pred.shape}."
        )
    if y_pred.shape.rank is None or y_pred.shape.rank < 1 or y_pred.shape[-1] is None:
        raise ValueError(
            f"`y_pred` needs a static last axis of items, got shape {y_pred.shape}."
        )
    predicted_rank = stable_ranks(y_pred)
    lo, count = tie_bounds(y_true)
    return tf.logical_and(predicted_rank >= lo, predicted_rank < lo + count)


def elementwise_rank_accuracy(y_true, y_pred) -> tf.Tensor:
    """Fraction of items whose predicted rank is a true rank, shape ``[...]``."""
    correct = _correctly_ranked(y_true, y_pred)
    return tf.reduce_mean(tf.cast(correct, tf.float32), axis=-1)


def ordering_exact_match(y_true, y_pred) -> tf.Tensor:
    """1.0 where the whole predicted ordering is right, else 0.0; ``[...]``."""
    correct = _correctly_ranked(y_true, y_pred)
    return tf.cast(tf.reduce_all(correct, axis=-1), tf.float32)


@keras.saving.register_keras_serializable(package="keras_newton")
class ElementwiseRankAccuracy(keras.metrics.MeanMetricWrapper):
    """Mean fraction of items ranked correctly (see the module docstring).

    Example:

    >>> metric = ElementwiseRankAccuracy()
    >>> metric.update_state([[1.0, 2.0, 3.0]], [[0.1, 0.3, 0.2]])
    >>> round(float(metric.result()), 4)
    0.3333
    """

    def __init__(self, name: str = "rank_accuracy", dtype=None):
        super().__init__(fn=elementwise_rank_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_newton")
class OrderingExactMatch(keras.metrics.MeanMetricWrapper):
    """Fraction of samples whose whole ordering is right.

    Example:

    >>> metric = OrderingExactMatch()
    >>> metric.update_state([[1.0, 2.0], [1.0, 2.0]], [[0.0, 5.0], [5.0, 0.0]])
    >>> float(metric.result())
    0.5
    """

    def __init__(self, name: str = "exact_match", dtype=None):
        super().__init__(fn=ordering_exact_match, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
