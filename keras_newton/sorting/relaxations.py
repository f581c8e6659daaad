"""Relaxed comparators for differentiable sorting networks.

A relaxed conditional swap of the pair ``(a, b)`` (min goes to ``a``'s wire,
max to ``b``'s) mixes its inputs with the weight ``alpha = F(beta * (b - a))``
where ``F`` is a sigmoid-shaped function with ``F(-v) = 1 - F(v)``:

.. math::

    \\min\\nolimits_F(a, b) = \\alpha a + (1 - \\alpha) b, \\qquad
    \\max\\nolimits_F(a, b) = (1 - \\alpha) a + \\alpha b.

Available ``F`` (``v = beta * (b - a)``):

* ``"logistic"``: :math:`\\sigma(v)`, the CDF of the standard logistic
  distribution (Petersen et al., 2021).
* ``"logistic_phi"``: :math:`\\sigma(v / (|a - b| + 10^{-10})^{\\lambda})`
  with ``lambda = art_lambda`` (the "activation replacement trick" of
  Petersen et al., 2021).
* ``"gaussian"``: :math:`\\Phi(v)`, the standard normal CDF.
* ``"reciprocal"``: :math:`\\tfrac12 (v / (2 + |v|) + 1)`.
* ``"cauchy"``: :math:`\\arctan(v) / \\pi + \\tfrac12`, the standard Cauchy CDF.
* ``"optimal"``: :math:`\\mathrm{clip}(v, \\pm\\tfrac14) + \\tfrac12 +
  \\mathrm{sign}(v)(\\tfrac14 - \\tfrac{1}{16|v|})` for :math:`|v| > \\tfrac14`.

``reciprocal``, ``cauchy`` and ``optimal`` make the whole network monotonic
(Petersen et al., 2022). The CDFs of standard distributions are evaluated
through ``tfp.distributions``; any scalar TFP distribution instance may be
passed instead of a name, and its ``cdf`` is used as ``F``.

Every branch is written so that first *and second* derivatives are finite at
ties ``a == b`` (the Newton-Hessian path differentiates twice): ``|.|`` has
derivative ``sign(0) = 0`` there, the ``1e-10`` of ``logistic_phi`` keeps the
power finite, and the ``1 / |v|`` of ``optimal`` only sees ``|v| > 1/4``.

Example:

>>> import tensorflow as tf
>>> a, b = tf.constant([0.0]), tf.constant([1.0])
>>> float(comparator_weight(a, b, "cauchy", steepness=1.0)[0])  # doctest: +ELLIPSIS
0.75...

References:
  Petersen, Borgelt, Kuehne, Deussen. "Differentiable Sorting Networks for
  Scalable Sorting and Ranking Supervision", ICML 2021.
  Petersen, Borgelt, Kuehne, Deussen. "Monotonic Differentiable Sorting
  Networks", ICLR 2022.
"""

from __future__ import annotations

from typing import Union

import tensorflow as tf
import tensorflow_probability as tfp

from keras_newton.sorting import _checks

tfd = tfp.distributions

RELAXATIONS = (
    "logistic",
    "logistic_phi",
    "gaussian",
    "reciprocal",
    "cauchy",
    "optimal",
)
MONOTONIC_RELAXATIONS = ("reciprocal", "cauchy", "optimal")
# Keeps (|a - b| + eps)^lambda away from 0 at ties, as in the published formula.
_PHI_EPSILON = 1e-10

Relaxation = Union[str, tfd.Distribution]


def _standard(distribution_cls, dtype) -> tfd.Distribution:
    return distribution_cls(
        loc=tf.constant(0.0, dtype), scale=tf.constant(1.0, dtype)
    )


def check_relaxation(relaxation: Relaxation) -> Relaxation:
    """Validates a relaxation name or TFP distribution; returns it unchanged."""
    if isinstance(relaxation, tfd.Distribution):
        batch = relaxation.batch_shape
        event = relaxation.event_shape
        if batch.rank != 0 or event.rank != 0:
            raise ValueError(
                "A distribution passed as `relaxation` must be scalar (batch and "
                f"event shape []), got batch_shape={batch}, event_shape={event}."
            )
        return relaxation
    if not isinstance(relaxation, str):
        raise TypeError(
            "`relaxation` must be one of "
            f"{RELAXATIONS} or a tfp.distributions.Distribution, got "
            f"{relaxation!r}."
        )
    if relaxation not in RELAXATIONS:
        raise ValueError(
            f"Unknown `relaxation` {relaxation!r}; expected one of {RELAXATIONS} "
            "or a tfp.distributions.Distribution instance."
        )
    return relaxation


def _optimal(v: tf.Tensor) -> tf.Tensor:
    abs_v = tf.abs(v)
    outside = abs_v > 0.25
    # Double `where`: 1/(16|v|) is only ever evaluated where |v| > 1/4, so
    # neither it nor its derivatives can produce inf * 0 = NaN near v = 0.
    safe_abs_v = tf.where(outside, abs_v, tf.ones_like(v))
    tail = tf.where(
        outside, tf.sign(v) * (0.25 - 1.0 / (16.0 * safe_abs_v)), tf.zeros_like(v)
    )
    return tf.clip_by_value(v, -0.25, 0.25) + 0.5 + tail


def comparator_weight(
    a: tf.Tensor,
    b: tf.Tensor,
    relaxation: Relaxation = "cauchy",
    steepness: float = 10.0,
    art_lambda: float = 0.25,
) -> tf.Tensor:
    """Returns ``alpha = F(steepness * (b - a))``, the weight of ``a`` in the min.

    Args:
      a: Values on the wires that receive the minimum.
      b: Values on the wires that receive the maximum (same shape as ``a``).
      relaxation: A name from ``RELAXATIONS`` or a scalar TFP distribution whose
        ``cdf`` is used as ``F``.
      steepness: Inverse temperature ``beta > 0``.
      art_lambda: Exponent ``lambda >= 0`` of ``logistic_phi``.

    Returns:
      ``alpha`` in ``[0, 1]``, shape and dtype of ``a``; ``alpha -> 1`` when
      ``b >> a`` (the pair is already in order).
    """
    relaxation = check_relaxation(relaxation)
    dtype = a.dtype
    beta = _checks.as_scalar(steepness, dtype)
    v = beta * (b - a)
    if isinstance(relaxation, tfd.Distribution):
        if relaxation.dtype != dtype:
            raise TypeError(
                f"The `relaxation` distribution has dtype {relaxation.dtype.name} "
                f"but the values to sort are {dtype.name}; build it with "
                f"{dtype.name} parameters."
            )
        return relaxation.cdf(v)
    if relaxation == "logistic":
        return _standard(tfd.Logistic, dtype).cdf(v)
    if relaxation == "logistic_phi":
        scale = tf.pow(
            tf.abs(a - b) + _PHI_EPSILON, _checks.as_scalar(art_lambda, dtype)
        )
        return _standard(tfd.Logistic, dtype).cdf(v / scale)
    if relaxation == "gaussian":
        return _standard(tfd.Normal, dtype).cdf(v)
    if relaxation == "cauchy":
        return _standard(tfd.Cauchy, dtype).cdf(v)
    if relaxation == "reciprocal":
        return 0.5 * (v / (2.0 + tf.abs(v)) + 1.0)
    return _optimal(v)
