"""NeuralSort: a unimodal row-stochastic relaxation of the sorting operator.

Grover et al. (2019) relax the descending permutation matrix of scores
:math:`s \\in \\mathbb{R}^n` row by row, with :math:`A_{jk} = |s_j - s_k|`:

.. math::

    \\hat P_{r,:} = \\mathrm{softmax}\\Big(\\frac{(n + 1 - 2r)\\, s - A\\mathbf{1}}
    {\\tau}\\Big), \\qquad r = 1, \\dots, n.

Applying it to :math:`-s` gives the ascending order, and transposing gives the
convention of ``keras_newton.sorting``: ``P[..., i, j]`` is the mass of input
``i`` at sorted position ``j``. Every column of ``P`` (one sorted position)
sums to 1; rows need not. As :math:`\\tau \\to 0`, ``P`` tends to the exact
permutation matrix (for distinct scores).

``|s_j - s_k|`` has first and second derivative 0 at ``j == k`` in TensorFlow
(``sign(0) = 0``), so Hessians are finite at ties.

Examples:
  >>> import tensorflow as tf
  >>> sorted_s, P = neural_sort(tf.constant([[0.3, -1.0, 2.0]]), tau=0.01)
  >>> [round(float(v), 3) for v in sorted_s[0]]
  [-1.0, 0.3, 2.0]

References:
  Grover, Wang, Zweig, Ermon. "Stochastic Optimization of Sorting Networks via
  Continuous Relaxations", ICLR 2019.
"""

from __future__ import annotations

import tensorflow as tf

from keras_newton.sorting import _checks


OVERFLOW_ROWS_INVERSE_TEMPERATURE = 2.0**20


def _overflow_safe_scale(scores: tf.Tensor, n: int) -> tf.Tensor:
    """``[..., 1]`` power-of-two divisors that keep the logits of a row finite.

    The logits reach about ``3 n max|s|``: rows with ``max|s|`` above
    ``dtype.max / (4 n)`` (scores near the float limit) are divided by
    ``2^floor(log2 max|s|)``; all other rows by 1, so ordinary scores give
    the same numbers as without this. Rows with ``±inf`` or NaN stay NaN.
    """
    largest = tf.reduce_max(tf.abs(scores), axis=-1, keepdims=True)
    too_large = largest > scores.dtype.max / (4.0 * n)
    exponent = tf.floor(tf.math.log(tf.where(too_large, largest, 1.0)) / tf.math.log(
        tf.constant(2.0, scores.dtype)))
    return tf.where(too_large, tf.pow(tf.constant(2.0, scores.dtype), exponent), 1.0)


def neural_sort(scores: tf.Tensor, tau: float = 1.0) -> tuple[tf.Tensor, tf.Tensor]:
    """Relaxed ascending sort of ``scores`` with NeuralSort.

    Args:
      scores: Shape ``[..., n]``, static ``n >= 2``, floating dtype.
      tau: Temperature ``> 0`` (``1 / steepness``).

    Returns:
      ``(sorted_scores, P)`` with ``P`` of shape ``[..., n, n]`` (columns sum
      to 1) and ``sorted_scores = einsum("...i,...ij->...j", scores, P)``.

    Raises:
      ValueError: ``n < 2`` or non-positive ``tau``.
      TypeError: non-floating ``scores``.
    """
    scores = _checks.as_float_tensor(scores, "scores")
    n = _checks.static_length(scores, "scores")
    _checks.check_positive(tau, "tau")
    out_dtype = scores.dtype
    s = _checks.upcast_half(scores)
    dtype = s.dtype
    scale = _overflow_safe_scale(s, n)
    flipped = -s / scale  # descending NeuralSort of -s is the ascending sort of s
    pairwise = tf.abs(flipped[..., :, None] - flipped[..., None, :])
    spread = tf.reduce_sum(pairwise, axis=-1)  # [..., n]: sum_k |s_j - s_k|
    coefficient = tf.cast(n + 1 - 2 * tf.range(1, n + 1), dtype)  # [n] over r
    logits = coefficient[:, None] * flipped[..., None, :] - spread[..., None, :]
    # The logits are linear in s, so those of s are scale * logits. Shifting
    # by the row maximum first (softmax is shift-invariant) keeps
    # scale / tau from turning the largest logit into inf - inf = NaN.
    logits -= tf.stop_gradient(tf.reduce_max(logits, axis=-1, keepdims=True))
    inverse_temperature = tf.minimum(
        scale[..., None] / _checks.as_scalar(tau, dtype), dtype.max)
    # Rows rescaled for overflow multiply the shifted logits (<= 0, the row's
    # largest exactly 0) by up to ~1e38. XLA may fuse and recompute the
    # logits with different rounding (FMA contraction, measured at
    # --xla_backend_optimization_level=0), so the largest is off by an ulp,
    # which times 1e38 is exp -> inf or an all-zero row: NaN. There the
    # multiplier is capped at 2^20, so an ulp moves a logit by < 1e-4 · 2^20
    # · ulp, harmless; those rows are then relaxed at a relative temperature
    # of about 1e-6 of max|s| (only scores that agree to ~6 digits stay soft).
    inverse_temperature = tf.where(
        scale[..., None] > 1.0,
        tf.minimum(inverse_temperature, OVERFLOW_ROWS_INVERSE_TEMPERATURE),
        inverse_temperature)
    p_hat = tf.nn.softmax(logits * inverse_temperature, axis=-1)  # [..., r, j]
    permutation = tf.linalg.matrix_transpose(p_hat)
    sorted_scores = tf.einsum("...i,...ij->...j", s, permutation)
    return tf.cast(sorted_scores, out_dtype), tf.cast(permutation, out_dtype)
