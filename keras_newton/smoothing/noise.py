"""Noise distributions for stochastic smoothing and their score functions.

Stochastic smoothing with a density ``μ(z) ∝ exp(-ν(z))`` needs samples ``z``
and the derivatives of ``ν``. The noise is i.i.d. per coordinate, so
``∇ν(z)`` is element-wise and ``∇²ν(z)`` is diagonal; both come from the
``log_prob`` of a standard (loc 0, scale 1) TensorFlow Probability
distribution by automatic differentiation:

.. math::

    \\nu(z) = -\\log \\mu(z), \\qquad
    \\text{normal: } \\nu' = z, \\quad
    \\text{logistic: } \\nu' = \\tanh(z/2), \\quad
    \\text{cauchy: } \\nu' = \\tfrac{2z}{1+z^2}, \\quad
    \\text{gumbel: } \\nu' = 1 - e^{-z}.

Samples are drawn with stateless seeds (``[2]``-shaped integer tensors), so
they compile under XLA and are reproducible; eager and XLA streams differ.

Example:

>>> import tensorflow as tf
>>> from keras_newton.smoothing.noise import sample_noise
>>> z, score, curvature = sample_noise("normal", [4, 3], seed=[0, 1])
>>> bool(tf.reduce_all(score == z))
True

References:
  Abernethy et al., "Online Linear Optimization via Smoothing", COLT 2014.
  Petersen et al., "Newton Losses", NeurIPS 2024, Lemma 4 (arXiv:2410.19055).
"""

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from keras_newton._validation import one_of

NOISES = ("normal", "logistic", "cauchy", "gumbel")
_DISTRIBUTIONS = {
    "normal": tfp.distributions.Normal,
    "logistic": tfp.distributions.Logistic,
    "cauchy": tfp.distributions.Cauchy,
    "gumbel": tfp.distributions.Gumbel,
}


class NoiseSample(NamedTuple):
    """Standard noise ``z`` with ``∇ν(z)`` (score) and ``diag ∇²ν(z)`` (curvature)."""

    z: tf.Tensor
    score: tf.Tensor
    curvature: tf.Tensor


def validate_noise(noise: str) -> str:
    """Returns ``noise`` if it names a supported distribution, else raises."""
    return one_of(noise, NOISES, "noise")


def standard_distribution(noise: str, dtype=tf.float32) -> tfp.distributions.Distribution:
    """The TFP distribution of ``noise`` with location 0 and scale 1."""
    validate_noise(noise)
    zero = tf.zeros([], dtype)
    return _DISTRIBUTIONS[noise](loc=zero, scale=tf.ones([], dtype))


def as_seed(seed) -> tf.Tensor:
    """Converts a ``[2]`` integer seed (list, tensor, Keras seed state) to int32.

    Raises:
      ValueError: if ``seed`` is not a ``[2]``-shaped integer tensor.
    """
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer or seed.shape.rank != 1 or seed.shape[0] != 2:
        raise ValueError(
            f"seed must be a [2]-shaped integer tensor (a stateless seed); got "
            f"dtype {seed.dtype.name} and shape {seed.shape}."
        )
    # Keras' SeedGenerator state is int64; stateless ops accept int32 pairs.
    return tf.cast(seed % (2**31 - 1), tf.int32)


def sample_noise(noise: str, shape, seed, dtype=tf.float32) -> NoiseSample:
    """Draws standard noise of ``shape`` and the derivatives of ``ν = -log μ``.

    Args:
      noise: ``"normal"``, ``"logistic"``, ``"cauchy"`` or ``"gumbel"``.
      shape: sample shape.
      seed: ``[2]``-shaped integer stateless seed.
      dtype: float32 or float64.

    Returns:
      :class:`NoiseSample` of tensors of ``shape`` (no gradient flows to them).
    """
    distribution = standard_distribution(noise, dtype)
    z = tf.stop_gradient(distribution.sample(shape, seed=as_seed(seed)))
    with tf.GradientTape() as outer:
        outer.watch(z)
        with tf.GradientTape() as inner:
            inner.watch(z)
            nu = -distribution.log_prob(z)
        # log_prob is element-wise, so the gradient of the sum is ν'(z_i).
        score = inner.gradient(nu, z)
    curvature = outer.gradient(score, z)
    return NoiseSample(z, tf.stop_gradient(score), tf.stop_gradient(curvature))
