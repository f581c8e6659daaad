"""Ranking supervision through a differentiable sorter.

Given the true values (or ranks) ``y`` of ``n`` items and predicted scores
``s``, a relaxed permutation matrix ``P(s)`` is compared with the exact
permutation matrix ``Q(y)`` (same convention: ``[i, j]`` = item ``i`` at
ascending position ``j``). Two objectives (``objective=``):

* ``"bce"`` (default): binary cross-entropy entry by entry, averaged over the
  ``n x n`` entries of each sample, as the differentiable-sorting-network
  papers train (Petersen et al. 2021, 2022, 2024):

  .. math::

      \\ell(y, s) = -\\frac{1}{n^2} \\sum_{i,j} Q_{ij} \\log \\tilde P_{ij}
      + (1 - Q_{ij}) \\log (1 - \\tilde P_{ij}).

* ``"positional_ce"``: the cross-entropy of each sorted position's
  distribution over the items (column ``j`` of ``P``), averaged over the
  ``n`` positions, as NeuralSort (Grover et al. 2019) and SoftSort (Prillo &
  Eisenschlos 2020) were introduced; with ``π^{-1}(j)`` the item at position
  ``j``:

  .. math::

      \\ell(y, s) = -\\frac{1}{n} \\sum_{j} \\log \\tilde P_{\\pi^{-1}(j), j}
      = -\\frac{1}{n} \\sum_{i,j} Q_{ij} \\log \\tilde P_{ij}.

  The second form is the one computed: it extends to ``ties="average"``
  (``Q`` then spreads a tie group's mass over its positions) and keeps a
  NaN label's NaN row of ``Q`` in the sample's loss.

In both, ``P`` is clipped to ``[0, 1]`` and ``log p~`` is evaluated as
``log(p + eps) - log(1 + eps)`` (``eps = keras.config.epsilon()``): the loss
is exactly 0 at a perfect prediction, and its first and second derivatives
stay finite where ``P`` saturates (the Newton-Hessian path differentiates
twice) without vanishing there, as a clip to ``[eps, 1]`` would make them.
Ties in ``y`` are resolved by ``permutations.permutation_matrix``
(``"stable"``: input order, default; ``"average"``: uniform over the tie
group's positions).

Example:

>>> import numpy as np
>>> loss = SortingLoss("diff_sort", relaxation="logistic", steepness=20.0)
>>> y_true = np.array([[3.0, 1.0, 2.0]], "float32")
>>> bool(loss(y_true, y_true) < loss(y_true, -y_true))
True

References:
  Petersen, Borgelt, Kuehne, Deussen. "Differentiable Sorting Networks for
  Scalable Sorting and Ranking Supervision", ICML 2021.
  Grover, Wang, Zweig, Ermon. "Stochastic Optimization of Sorting Networks
  via Continuous Relaxations", ICLR 2019 (NeuralSort).
  Prillo, Eisenschlos. "SoftSort: A Continuous Relaxation for the argsort
  Operator", ICML 2020.
  Petersen et al. "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024.
"""

from __future__ import annotations

import inspect
import numbers

import keras
import tensorflow as tf

from keras_newton.sorting import SORTERS
from keras_newton.sorting import _checks
from keras_newton.sorting.networks import NETWORKS
from keras_newton.sorting.permutations import TIES
from keras_newton.sorting.permutations import permutation_matrix
from keras_newton.sorting.relaxations import check_relaxation

_POSITIVE = ("tau", "steepness", "power")
OBJECTIVES = ("bce", "positional_ce")


def _check_sorter_options(sorter: str, options: dict) -> dict:
    """Validates the sorter and its options; returns them JSON-friendly."""
    if not isinstance(sorter, str) or sorter not in SORTERS:
        raise ValueError(f"Unknown `sorter` {sorter!r}; expected one of {tuple(SORTERS)}.")
    accepted = list(inspect.signature(SORTERS[sorter]).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for sorter {sorter!r}; it accepts "
            f"{accepted}."
        )
    for name in _POSITIVE:
        if name in options:
            _checks.check_positive(options[name], name)
    if "art_lambda" in options:
        _checks.check_positive(options["art_lambda"], "art_lambda", allow_zero=True)
    if "relaxation" in options:
        check_relaxation(options["relaxation"])
    if options.get("network", NETWORKS[0]) not in NETWORKS:
        raise ValueError(
            f"Unknown `network` {options['network']!r}; expected one of {NETWORKS}."
        )
    # NumPy scalars would break the JSON config of a saved model.
    return {
        key: float(value)
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, int))
        else value
        for key, value in options.items()
    }


def permutation_cross_entropy(
    p_true: tf.Tensor, p_pred: tf.Tensor, epsilon: float
) -> tf.Tensor:
    """Binary cross-entropy per entry, mean over the last two axes."""
    p_pred = tf.clip_by_value(p_pred, 0.0, 1.0)
    shift = tf.math.log1p(tf.cast(epsilon, p_pred.dtype))
    log_p = tf.math.log(p_pred + epsilon) - shift
    log_not_p = tf.math.log(1.0 - p_pred + epsilon) - shift
    entries = -(p_true * log_p + (1.0 - p_true) * log_not_p)
    return tf.reduce_mean(entries, axis=[-2, -1])


def positional_cross_entropy(
    p_true: tf.Tensor, p_pred: tf.Tensor, epsilon: float
) -> tf.Tensor:
    """Cross-entropy of each position's column, mean over the ``n`` positions.

    ``-(1/n) Σ_ij Q_ij log P_ij`` (see the module docstring): the true item's
    log-probability at every position, summed over items as a ``Q``-weighted
    sum rather than gathered, so a NaN row of ``Q`` (NaN label) stays NaN.
    """
    p_pred = tf.clip_by_value(p_pred, 0.0, 1.0)
    shift = tf.math.log1p(tf.cast(epsilon, p_pred.dtype))
    log_p = tf.math.log(p_pred + epsilon) - shift
    n = tf.cast(tf.shape(p_pred)[-1], p_pred.dtype)
    return -tf.reduce_sum(p_true * log_p, axis=[-2, -1]) / n


OBJECTIVE_FUNCTIONS = {
    "bce": permutation_cross_entropy,
    "positional_ce": positional_cross_entropy,
}


@keras.saving.register_keras_serializable(package="keras_newton")
class SortingLoss(keras.losses.Loss):
    """Cross-entropy between relaxed and true permutation matrices.

    Args:
      sorter: ``"diff_sort"`` (default), ``"neural_sort"`` or ``"soft_sort"``.
      ties: How ties in ``y_true`` are resolved: ``"stable"`` or ``"average"``.
      objective: ``"bce"`` (default: entry-wise binary cross-entropy, mean over
        the ``n x n`` entries) or ``"positional_ce"`` (cross-entropy of each
        sorted position's distribution over the items, mean over the ``n``
        positions); see the module docstring.
      reduction, name, dtype: As for ``keras.losses.Loss``.
      **sorter_options: Keyword arguments of the sorter, e.g. ``network``,
        ``relaxation``, ``steepness``, ``art_lambda`` for ``diff_sort``, or
        ``tau`` (and ``power``) for ``neural_sort`` / ``soft_sort``.

    Call arguments:
      y_true: True values or ranks of the items, ``[batch, ..., n]``.
      y_pred: Predicted scores, same shape.

    Returns (from ``call``):
      Per-sample losses of shape ``[batch, ...]``.
    """

    def __init__(
        self,
        sorter: str = "diff_sort",
        ties: str = "stable",
        objective: str = "bce",
        reduction: str = "sum_over_batch_size",
        name: str = "sorting_loss",
        dtype=None,
        **sorter_options,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        sorter_options = _check_sorter_options(sorter, sorter_options)
        if ties not in TIES:
            raise ValueError(f"Unknown `ties` {ties!r}; expected one of {TIES}.")
        if not isinstance(objective, str) or objective not in OBJECTIVES:
            raise ValueError(
                f"Unknown `objective` {objective!r}; expected one of {OBJECTIVES}."
            )
        self.sorter = sorter
        self.ties = ties
        self.objective = objective
        self.sorter_options = dict(sorter_options)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        if not y_true.shape.is_compatible_with(y_pred.shape):
            raise ValueError(
                "`y_true` (true values of the items) and `y_pred` (scores) must "
                f"have the same shape [..., n]; got {y_true.shape} and "
                f"{y_pred.shape}."
            )
        _checks.static_length(y_pred, "y_pred")
        _, p_pred = SORTERS[self.sorter](y_pred, **self.sorter_options)
        p_true = permutation_matrix(y_true, self.ties, dtype=p_pred.dtype)
        return OBJECTIVE_FUNCTIONS[self.objective](
            p_true, p_pred, keras.config.epsilon()
        )

    def get_config(self):
        relaxation = self.sorter_options.get("relaxation")
        if relaxation is not None and not isinstance(relaxation, str):
            raise ValueError(
                "SortingLoss with a distribution instance as `relaxation` cannot "
                "be serialized; use a relaxation name."
            )
        config = super().get_config()
        config.update(
            sorter=self.sorter, ties=self.ties, objective=self.objective,
            **self.sorter_options,
        )
        return config
