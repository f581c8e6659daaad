"""SoftSort: a row-stochastic relaxation built from the sorted scores.

Prillo & Eisenschlos (2020) compare every sorted score with every score:

.. math::

    \\hat P_{r,:} = \\mathrm{softmax}\\big(-|\\mathrm{sort}(s)_r - s|^p / \\tau\\big).

Here ``sort`` is ascending, and ``P = \\hat P^T`` follows the convention of
``keras_newton.sorting``: ``P[..., i, j]`` is the mass of input ``i`` at sorted
position ``j``; columns sum to 1. Gradients flow through ``sort(s)`` as in the
original method.

``|d|^p`` is computed as ``|d|`` for ``p = 1``, ``d^2`` for ``p = 2`` and with
a guarded power otherwise, so that no derivative up to second order is NaN
where ``d = 0`` (which happens on every row: ``sort(s)_r`` is one of the ``s``).

Examples:
  >>> import tensorflow as tf
  >>> sorted_s, P = soft_sort(tf.constant([[0.3, -1.0, 2.0]]), tau=0.01)
  >>> [round(float(v), 3) for v in sorted_s[0]]
  [-1.0, 0.3, 2.0]

References:
  Prillo, Eisenschlos. "SoftSort: A Continuous Relaxation for the argsort
  Operator", ICML 2020.
"""

from __future__ import annotations

import tensorflow as tf

from keras_newton.sorting import _checks, permutations


def _abs_power(d: tf.Tensor, power: float) -> tf.Tensor:
    if power == 1:
        return tf.abs(d)
    if power == 2:
        return tf.square(d)
    magnitude = tf.abs(d)
    nonzero = magnitude > 0
    safe = tf.where(nonzero, magnitude, tf.ones_like(d))
    return tf.where(nonzero, tf.pow(safe, power), tf.zeros_like(d))


def soft_sort(
    scores: tf.Tensor, tau: float = 1.0, power: float = 1.0
) -> tuple[tf.Tensor, tf.Tensor]:
    """Relaxed ascending sort of ``scores`` with SoftSort.

    Args:
      scores: Shape ``[..., n]``, static ``n >= 2``, floating dtype.
      tau: Temperature ``> 0``.
      power: Exponent ``p > 0`` of the distance (Python number).

    Returns:
      ``(sorted_scores, P)`` with ``P`` of shape ``[..., n, n]`` (columns sum
      to 1) and ``sorted_scores = einsum("...i,...ij->...j", scores, P)``.

    Raises:
      ValueError: ``n < 2``, non-positive ``tau`` or ``power``.
      TypeError: non-floating ``scores`` or a tensor ``power``.
    """
    scores = _checks.as_float_tensor(scores, "scores")
    _checks.static_length(scores, "scores")
    _checks.check_positive(tau, "tau")
    if tf.is_tensor(power):
        raise TypeError("`power` must be a Python number, got a tensor.")
    _checks.check_positive(power, "power")
    out_dtype = scores.dtype
    s = _checks.upcast_half(scores)
    anchors = tf.sort(s, axis=-1, direction="ASCENDING")
    distance = _abs_power(anchors[..., :, None] - s[..., None, :], float(power))
    p_hat = tf.nn.softmax(-distance / _checks.as_scalar(tau, s.dtype), axis=-1)
    permutation = tf.linalg.matrix_transpose(p_hat)
    # Where NaN lands after tf.sort differs between eager and XLA (and between
    # CPUs), so a set with a NaN score is made all-NaN explicitly.
    permutation = permutations.nan_where_unordered(s, permutation)
    sorted_scores = tf.einsum("...i,...ij->...j", s, permutation)
    return tf.cast(sorted_scores, out_dtype), tf.cast(permutation, out_dtype)
