"""Shortest-path supervision through the relaxed (AlgoVision) Bellman-Ford.

The network predicts a cost map ``c`` of shape ``[N, H, W]``; the relaxed
path ``p̃(c)`` of :func:`keras_newton.shortest_path.relaxed_shortest_path` is
compared with the true 0/1 path mask ``p`` by the mean over the ``H·W`` cells
of an L1 or squared L2 distance:

.. math::

    \\ell_{L1}(p, c) = \\frac{1}{HW}\\sum_{ij} |\\tilde p_{ij}(c) - p_{ij}|,
    \\qquad
    \\ell_{L2}(p, c) = \\frac{1}{HW}\\sum_{ij} (\\tilde p_{ij}(c) - p_{ij})^2 .

Example:

>>> import tensorflow as tf
>>> from keras_newton.losses import ShortestPathLoss
>>> from keras_newton.shortest_path import shortest_path
>>> costs = tf.random.stateless_uniform([4, 6, 6], seed=[1, 2]) + 0.1
>>> loss = ShortestPathLoss(loss="l1", beta=10.0, n_iter=12)
>>> float(loss(shortest_path(costs), costs)) >= 0.0
True

References:
  Petersen, Borgelt, Kuehne & Deussen, "Learning with Algorithmic
  Supervision via Continuous Relaxations", NeurIPS 2021 (arXiv:2110.05651).
  Petersen et al., "Newton Losses", NeurIPS 2024 (arXiv:2410.19055).
"""

from typing import Optional

import keras
import tensorflow as tf

from keras_newton.shortest_path.relaxed import relaxed_shortest_path, validate_relaxed_args
from keras_newton.shortest_path._t_conorms import validate_t_conorm

DISTANCES = ("l1", "l2")


@keras.saving.register_keras_serializable(package="keras_newton")
class ShortestPathLoss(keras.losses.Loss):
    """Distance between the relaxed shortest path of predicted costs and the true path.

    ``call(y_true, y_pred)`` takes the true path mask and the predicted cost
    map, both ``[N, H, W]``, and returns per-sample values ``[N]``. The loss
    is twice differentiable (nested tapes), so every Newton curvature works;
    exact Hessians are expensive for large grids (``m = H·W`` outputs per
    sample). With ``loop="while"`` the nested-tape Hessian cannot be
    vectorized under XLA (a ``tf.while_loop``), and neither with
    ``unroll=False`` (faster XLA compiles, see
    :func:`~keras_newton.shortest_path.relaxed_shortest_path`); use
    ``curvature="fisher"`` there.

    Args:
      loss: ``"l1"`` or ``"l2"`` (squared).
      beta, n_iter, loop, t_conorm, p, max_iter, epsilon, absorbing_source, unroll: options
        of :func:`keras_newton.shortest_path.relaxed_shortest_path`.
      name, reduction, dtype: as for ``keras.losses.Loss``.
    """

    def __init__(
        self,
        loss: str = "l1",
        beta: float = 10.0,
        n_iter: Optional[int] = None,
        loop: str = "for",
        t_conorm: str = "probabilistic",
        p: Optional[float] = None,
        max_iter: int = 1024,
        epsilon: float = 1e-5,
        absorbing_source: bool = False,
        unroll: bool = True,
        name: str = "shortest_path_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if loss not in DISTANCES:
            raise ValueError(f"Unknown loss={loss!r}; expected one of {DISTANCES}.")
        self.beta, self.epsilon = validate_relaxed_args(beta, n_iter, loop, max_iter, epsilon)
        self.p = validate_t_conorm(t_conorm, p)
        self.distance = loss
        self.n_iter = n_iter
        self.loop = loop
        self.t_conorm = t_conorm
        self.max_iter = max_iter
        self.absorbing_source = bool(absorbing_source)
        self.unroll = bool(unroll)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        if y_pred.shape.rank != 3:
            raise ValueError(
                f"y_pred must be cost maps of shape [N, H, W]; got shape {y_pred.shape}."
            )
        y_true = tf.cast(y_true, y_pred.dtype)
        if not y_true.shape.is_compatible_with(y_pred.shape):
            raise ValueError(
                f"y_true (path masks) must have the shape of y_pred; got "
                f"{y_true.shape} and {y_pred.shape}."
            )
        path = relaxed_shortest_path(
            y_pred,
            beta=self.beta,
            n_iter=self.n_iter,
            loop=self.loop,
            t_conorm=self.t_conorm,
            p=self.p,
            max_iter=self.max_iter,
            epsilon=self.epsilon,
            absorbing_source=self.absorbing_source,
            unroll=self.unroll,
        )
        difference = path - y_true
        distance = tf.abs(difference) if self.distance == "l1" else tf.square(difference)
        return tf.reduce_mean(distance, axis=[1, 2])

    def get_config(self):
        config = super().get_config()
        config.update(
            loss=self.distance,
            beta=self.beta,
            n_iter=self.n_iter,
            loop=self.loop,
            t_conorm=self.t_conorm,
            p=self.p,
            max_iter=self.max_iter,
            epsilon=self.epsilon,
            absorbing_source=self.absorbing_source,
            unroll=self.unroll,
        )
        return config
