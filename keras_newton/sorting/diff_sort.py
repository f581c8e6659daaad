"""Differentiable sorting networks (odd-even transposition and bitonic).

Every comparator of a sorting network is replaced by a relaxed conditional
swap (see ``relaxations``); the same mixing is applied to a permutation matrix
that starts as the identity, so the network returns both the relaxed sorted
values and a doubly-stochastic relaxed permutation matrix:

.. math::

    \\alpha = F(\\beta (b - a)), \\quad
    (a, b) \\mapsto (\\alpha a + (1 - \\alpha) b,\\; (1 - \\alpha) a + \\alpha b),
    \\qquad \\hat y_j = \\sum_i x_i P_{ij}.

Convention (shared by all sorters of ``keras_newton.sorting``): ascending
order; ``P[..., i, j]`` is the mass of input ``i`` at sorted position ``j``.

Examples:
  >>> import tensorflow as tf
  >>> sorted_x, P = diff_sort(tf.constant([[3.0, 1.0, 2.0]]), steepness=100.0)
  >>> [round(float(v), 3) for v in sorted_x[0]]
  [1.0, 2.0, 3.0]

References:
  Petersen, Borgelt, Kuehne, Deussen. "Differentiable Sorting Networks for
  Scalable Sorting and Ranking Supervision", ICML 2021.
  Petersen, Borgelt, Kuehne, Deussen. "Monotonic Differentiable Sorting
  Networks", ICLR 2022.
"""

from __future__ import annotations

import tensorflow as tf

from keras_newton.sorting import _checks
from keras_newton.sorting.networks import network_plan
from keras_newton.sorting.relaxations import Relaxation
from keras_newton.sorting.relaxations import check_relaxation
from keras_newton.sorting.relaxations import comparator_weight


def diff_sort(
    x: tf.Tensor,
    network: str = "odd_even",
    relaxation: Relaxation = "cauchy",
    steepness: float = 10.0,
    art_lambda: float = 0.25,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Sorts the last axis of ``x`` with a differentiable sorting network.

    Args:
      x: Values of shape ``[..., n]`` with static ``n >= 2`` and any number of
        leading batch dimensions; floating dtype (half precision is computed in
        float32 and cast back).
      network: ``"odd_even"`` (``n`` layers) or ``"bitonic"`` (``log2(N) *
        (log2(N) + 1) / 2`` layers for ``N`` the next power of two; padding is
        resolved exactly, see ``networks``).
      relaxation: A name from ``relaxations.RELAXATIONS`` or a scalar
        ``tfp.distributions.Distribution`` (its ``cdf`` is the relaxation).
      steepness: Inverse temperature ``beta > 0``; ``beta -> inf`` gives the
        hard sort.
      art_lambda: Exponent ``lambda >= 0`` used by ``"logistic_phi"``.

    Returns:
      ``(sorted_x, P)``: relaxed ascending values ``[..., n]`` and relaxed
      permutation matrix ``[..., n, n]`` with rows and columns summing to 1 and
      ``sorted_x = einsum("...i,...ij->...j", x, P)``.

    Raises:
      ValueError: ``n < 2``, unknown ``network`` or ``relaxation`` name,
        non-positive ``steepness`` or negative ``art_lambda``.
      TypeError: non-floating ``x`` or an unsupported ``relaxation`` type.
    """
    x = _checks.as_float_tensor(x, "x")
    n = _checks.static_length(x, "x")
    _checks.check_positive(steepness, "steepness")
    _checks.check_positive(art_lambda, "art_lambda", allow_zero=True)
    relaxation = check_relaxation(relaxation)
    plan = network_plan(network, n)
    out_dtype = x.dtype
    values = _checks.upcast_half(x)
    # Q = P^T (rows follow the wires): every layer gathers whole rows.
    rows = tf.eye(n, dtype=values.dtype)
    rows = tf.broadcast_to(rows, tf.concat([tf.shape(values), [n]], axis=0))
    for gather, k in plan.layers:
        values = tf.gather(values, gather, axis=-1)
        rows = tf.gather(rows, gather, axis=-2)
        a, b, rest = values[..., :k], values[..., k : 2 * k], values[..., 2 * k :]
        alpha = comparator_weight(a, b, relaxation, steepness, art_lambda)
        values = tf.concat(
            [alpha * a + (1 - alpha) * b, (1 - alpha) * a + alpha * b, rest], axis=-1
        )
        rows_a, rows_b = rows[..., :k, :], rows[..., k : 2 * k, :]
        weight = alpha[..., :, None]
        rows = tf.concat(
            [
                weight * rows_a + (1 - weight) * rows_b,
                (1 - weight) * rows_a + weight * rows_b,
                rows[..., 2 * k :, :],
            ],
            axis=-2,
        )
    sorted_x = tf.gather(values, plan.output_indices, axis=-1)
    permutation = tf.linalg.matrix_transpose(
        tf.gather(rows, plan.output_indices, axis=-2)
    )
    return tf.cast(sorted_x, out_dtype), tf.cast(permutation, out_dtype)
