"""Stochastic smoothing: Monte-Carlo gradients, Hessians and Jacobians.

For a function ``f`` of a sample's output ``y ∈ R^m`` and noise ``ε = σZ``
with ``Z`` drawn from a density ``μ(z) ∝ exp(-ν(z))``, the smoothed function
``f_σ(y) = E[f(y + σZ)]`` is differentiable even when ``f`` is not (e.g. the
Hamming distance of an exact shortest path). Lemma 4 of Petersen et al.
(2024) gives its derivatives in variance-reduced form, with the value at the
unperturbed point as control variate (``E[∇ν(Z)] = 0``,
``E[∇ν∇νᵀ - ∇²ν] = 0``):

.. math::

    \\nabla f_\\sigma(y) = \\tfrac{1}{\\sigma}
        E\\big[(f(y + \\sigma Z) - f(y))\\, \\nabla\\nu(Z)\\big],

    \\nabla^2 f_\\sigma(y) = \\tfrac{1}{\\sigma^2}
        E\\big[(f(y + \\sigma Z) - f(y))
        (\\nabla\\nu(Z)\\nabla\\nu(Z)^\\top - \\nabla^2\\nu(Z))\\big].

For a vector-valued ``f`` (an algorithm) the first line is its Jacobian
``E[(f(y+σZ) - f(y)) ∇ν(Z)ᵀ] / σ``. All expectations are sample means over
``num_samples`` draws; every function here maps a batch ``y`` of shape
``[N, m]`` and calls ``fn`` once on all perturbed copies, shaped
``[S, N, m]`` (and once on ``y[None]`` for the control variate).

Example:

>>> import tensorflow as tf
>>> from keras_newton.smoothing import smoothed_loss_derivatives
>>> fn = lambda y: tf.reduce_sum(y ** 2, axis=-1)       # [S, N, m] -> [S, N]
>>> est = smoothed_loss_derivatives(
...     fn, tf.ones([2, 3]), sigma=0.5, num_samples=10, seed=[0, 1], hessian=True)
>>> est.gradient.shape, est.hessian.shape
(TensorShape([2, 3]), TensorShape([2, 3, 3]))

References:
  Abernethy, Lee, Sinha & Tewari, "Online Linear Optimization via
  Smoothing", COLT 2014.
  Petersen, Borgelt, Sutter, Kuehne, Deussen & Ermon, "Newton Losses: Using
  Curvature Information for Learning with Differentiable Algorithms",
  NeurIPS 2024, Lemma 4 (arXiv:2410.19055).
"""

from typing import Callable, NamedTuple, Optional, Tuple

import tensorflow as tf

from keras_newton._validation import finite_number, int_at_least
from keras_newton.smoothing.noise import NoiseSample, sample_noise, validate_noise


class SmoothedEstimate(NamedTuple):
    """Per-sample smoothed value ``[N]``, gradient ``[N, m]``, Hessian ``[N, m, m]``."""

    value: tf.Tensor
    gradient: tf.Tensor
    hessian: Optional[tf.Tensor]


def validate_smoothing_args(num_samples, sigma, noise) -> Tuple[int, float, str]:
    """Checks ``num_samples >= 1``, finite ``sigma > 0`` and the noise name."""
    num_samples = int_at_least(num_samples, "num_samples")
    sigma = finite_number(sigma, "sigma")
    return num_samples, sigma, validate_noise(noise)


def _check_batch(y) -> tf.Tensor:
    y = tf.convert_to_tensor(y)
    if y.dtype not in (tf.float32, tf.float64):
        raise TypeError(f"y must be float32 or float64, got dtype {y.dtype.name}.")
    if y.shape.rank != 2 or y.shape[-1] is None:
        raise ValueError(f"y must have shape [N, m] with static m; got shape {y.shape}.")
    return y


def perturb(y, num_samples: int, sigma: float, noise: str, seed):
    """``y + σZ`` of shape ``[S, N, m]`` and the noise it used."""
    y = _check_batch(y)
    sample = sample_noise(noise, tf.concat([[num_samples], tf.shape(y)], 0), seed, y.dtype)
    return y[None] + sigma * sample.z, sample


def _differences(fn, y, perturbed, control_variate: bool):
    """``fn`` on the perturbed copies, minus ``fn(y)`` when ``control_variate``."""
    values = fn(perturbed)
    if not control_variate:
        return values, values
    return values, values - fn(y[None])


def _with_gradient(mean, differences, sample: NoiseSample, y, sigma):
    """``mean`` carrying the gradient of the smoothing estimator w.r.t. ``y``.

    Adds ``mean_s Δf_s ⟨∇ν(Z_s), y - stop(y)⟩ / σ``, which is exactly zero but
    has the estimator's vector-Jacobian product as gradient; no custom
    gradient or Jacobian matrix is needed, so it works in every mode.
    """
    offset = y - tf.stop_gradient(y)
    projection = tf.einsum("snm,nm->sn", sample.score, offset) / sigma
    projection = tf.reshape(
        projection, tf.concat([tf.shape(projection), tf.ones_like(tf.shape(mean)[1:])], 0)
    )
    return tf.stop_gradient(mean) + tf.reduce_mean(
        tf.stop_gradient(differences) * projection, axis=0
    )


def smoothed_function(
    fn: Callable[[tf.Tensor], tf.Tensor],
    y,
    *,
    sigma: float,
    num_samples: int,
    seed,
    noise: str = "normal",
    control_variate: bool = True,
) -> tf.Tensor:
    """Monte-Carlo ``E[f(y + σZ)]`` whose gradient is the smoothing estimator.

    Args:
      fn: maps ``[S, N, m]`` to ``[S, N, ...]`` (need not be differentiable).
      y: ``[N, m]`` points.
      sigma, num_samples, seed, noise: noise scale ``σ``, number of samples
        ``S``, ``[2]`` stateless seed, noise name.
      control_variate: subtract ``f(y)`` inside the gradient estimator.

    Returns:
      ``[N, ...]`` sample mean; backpropagation applies the estimated
      Jacobian ``E[(f(y+σZ) - f(y)) ∇ν(Z)ᵀ] / σ`` (zero second derivative).
    """
    num_samples, sigma, noise = validate_smoothing_args(num_samples, sigma, noise)
    perturbed, sample = perturb(y, num_samples, sigma, noise, seed)
    values, differences = _differences(fn, y, tf.stop_gradient(perturbed), control_variate)
    return _with_gradient(tf.reduce_mean(values, 0), differences, sample, y, sigma)


def smoothed_jacobian(
    fn: Callable[[tf.Tensor], tf.Tensor],
    y,
    *,
    sigma: float,
    num_samples: int,
    seed,
    noise: str = "normal",
    control_variate: bool = True,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Sample mean ``[N, k]`` and Jacobian estimate ``[N, k, m]`` of ``E[f(y+σZ)]``.

    ``fn`` maps ``[S, N, m]`` to ``[S, N, k]``; arguments as for
    :func:`smoothed_function`.
    """
    num_samples, sigma, noise = validate_smoothing_args(num_samples, sigma, noise)
    perturbed, sample = perturb(y, num_samples, sigma, noise, seed)
    values, differences = _differences(fn, y, tf.stop_gradient(perturbed), control_variate)
    jacobian = tf.einsum("snk,snm->nkm", differences, sample.score) / (num_samples * sigma)
    return tf.reduce_mean(values, 0), jacobian


def smoothed_loss_derivatives(
    fn: Callable[[tf.Tensor], tf.Tensor],
    y,
    *,
    sigma: float,
    num_samples: int,
    seed,
    noise: str = "normal",
    hessian: bool = False,
) -> SmoothedEstimate:
    """Lemma 4 estimates of the smoothed per-sample loss and its derivatives.

    Args:
      fn: per-sample loss, ``[S, N, m] -> [S, N]`` (need not be differentiable).
      y: ``[N, m]`` points.
      sigma, num_samples, seed, noise: as for :func:`smoothed_function`.
      hessian: also estimate the per-sample Hessians (symmetric by
        construction).

    Returns:
      :class:`SmoothedEstimate` with the value ``E[f(y+σZ)]`` (carrying the
      gradient estimator, see :func:`smoothed_function`), the gradient
      ``[N, m]`` and the Hessian ``[N, m, m]`` or ``None``.
    """
    num_samples, sigma, noise = validate_smoothing_args(num_samples, sigma, noise)
    perturbed, sample = perturb(y, num_samples, sigma, noise, seed)
    values, differences = _differences(fn, y, tf.stop_gradient(perturbed), True)
    differences = tf.stop_gradient(differences)
    value = _with_gradient(tf.reduce_mean(values, 0), differences, sample, y, sigma)
    weighted = differences[..., None] * sample.score
    gradient = tf.reduce_mean(weighted, 0) / sigma
    if not hessian:
        return SmoothedEstimate(value, gradient, None)
    outer = tf.einsum("snm,snk->nmk", weighted, sample.score)
    diagonal = tf.reduce_mean(differences[..., None] * sample.curvature, 0)
    matrix = (outer / num_samples - tf.linalg.diag(diagonal)) / sigma**2
    return SmoothedEstimate(value, gradient, matrix)
