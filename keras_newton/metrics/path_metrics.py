"""Shortest-path metrics: perfect match and cost ratio (Warcraft benchmark).

Predictions are cost maps (solved with the exact
:func:`keras_newton.shortest_path.shortest_path`) or, with
``from_costs=False``, path masks (thresholded at 0.5).

.. math::

    \\text{perfect match} = [\\hat\\pi = \\pi], \\qquad
    \\text{cost ratio} = \\frac{\\sum_{v} w_v \\hat\\pi_v}{\\sum_v w_v \\pi^\\star_v} \\ge 1,

with ``w`` the true cell costs and ``π*`` the true shortest path. The cost
ratio needs ``w``, so ``CostRatio`` takes the true *costs* as ``y_true``
(the optimal cost is unique even when the optimal path is not), while
``PerfectMatch`` takes the true *path*.

Example:

>>> import tensorflow as tf
>>> from keras_newton.metrics import CostRatio, PerfectMatch
>>> from keras_newton.shortest_path import shortest_path
>>> costs = tf.random.stateless_uniform([4, 6, 6], seed=[1, 2]) + 0.1
>>> metric = PerfectMatch()
>>> metric.update_state(shortest_path(costs), costs)
>>> float(metric.result())
1.0
>>> ratio = CostRatio()
>>> ratio.update_state(costs, costs)
>>> float(ratio.result())
1.0

References:
  Vlastelica et al., "Differentiation of Blackbox Combinatorial Solvers",
  ICLR 2020. Petersen et al., "Newton Losses", NeurIPS 2024.
"""

import keras
import tensorflow as tf

from keras_newton.shortest_path import shortest_path


def _as_path(y_pred, from_costs: bool) -> tf.Tensor:
    y_pred = tf.convert_to_tensor(y_pred)
    if y_pred.shape.rank is None or y_pred.shape.rank < 2:
        raise ValueError(f"y_pred must have shape [N, H, W]; got shape {y_pred.shape}.")
    if from_costs:
        return shortest_path(y_pred)
    return tf.cast(y_pred > 0.5, y_pred.dtype)


def perfect_match(y_true, y_pred, from_costs: bool = True) -> tf.Tensor:
    """``[N]`` 1.0 where the predicted path equals the true path mask ``y_true``."""
    predicted = _as_path(y_pred, from_costs)
    # Cast first: masks often come as integers or booleans (a uint8 mask
    # cannot be compared with 0.5).
    truth = tf.cast(tf.cast(y_true, predicted.dtype) > 0.5, predicted.dtype)
    axes = list(range(1, predicted.shape.rank))
    return tf.cast(tf.reduce_all(tf.equal(predicted, truth), axis=axes), predicted.dtype)


def cost_ratio(y_true, y_pred, from_costs: bool = True) -> tf.Tensor:
    """``[N]`` true cost of the predicted path over the optimal cost (``y_true``: true costs)."""
    predicted = _as_path(y_pred, from_costs)
    costs = tf.cast(tf.convert_to_tensor(y_true), predicted.dtype)
    axes = list(range(1, predicted.shape.rank))
    optimal = tf.reduce_sum(costs * shortest_path(costs), axis=axes)
    return tf.reduce_sum(costs * predicted, axis=axes) / optimal


@keras.saving.register_keras_serializable(package="keras_newton")
class PerfectMatch(keras.metrics.MeanMetricWrapper):
    """Fraction of maps whose predicted shortest path equals the true path.

    Args:
      from_costs: ``y_pred`` are cost maps (solved exactly) if True, path
        masks (thresholded at 0.5) if False.
      name, dtype: as for ``keras.metrics.Metric``.
    """

    def __init__(self, from_costs: bool = True, name: str = "perfect_match", dtype=None):
        super().__init__(perfect_match, name=name, dtype=dtype, from_costs=bool(from_costs))
        self.from_costs = bool(from_costs)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "from_costs": self.from_costs}


@keras.saving.register_keras_serializable(package="keras_newton")
class CostRatio(keras.metrics.MeanMetricWrapper):
    """Mean ratio of the predicted path's true cost to the optimal cost (``>= 1``).

    ``y_true`` are the true cost maps ``[N, H, W]`` (not the path).

    Args:
      from_costs: ``y_pred`` are cost maps (solved exactly) if True, path
        masks (thresholded at 0.5) if False.
      name, dtype: as for ``keras.metrics.Metric``.
    """

    def __init__(self, from_costs: bool = True, name: str = "cost_ratio", dtype=None):
        super().__init__(cost_ratio, name=name, dtype=dtype, from_costs=bool(from_costs))
        self.from_costs = bool(from_costs)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "from_costs": self.from_costs}
