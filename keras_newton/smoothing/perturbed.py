"""Perturbed optimizers (Berthet et al., 2020): ``ŷ_ε(θ) = E[y*(θ + σZ)]``.

For a solver ``y*(θ) = argopt_{w ∈ C} ⟨θ, w⟩`` over a finite set ``C`` the
perturbed optimizer is smooth in ``θ``, and its Jacobian has the
score-function form

.. math::

    \\hat y_\\varepsilon(\\theta) = E[y^\\star(\\theta + \\sigma Z)], \\qquad
    J_\\theta \\hat y_\\varepsilon = \\tfrac{1}{\\sigma}
        E\\big[y^\\star(\\theta + \\sigma Z)\\, \\nabla\\nu(Z)^\\top\\big].

It is the gradient of ``F_ε(θ) = E[opt_w ⟨θ + σZ, w⟩]``, so the Jacobian
is the Hessian of ``F_ε`` (symmetric in expectation). With Gumbel noise and
the one-hot argmax, ``ŷ_ε(θ) = softmax(θ / σ)``.

Example:

>>> import tensorflow as tf
>>> from keras_newton.smoothing import perturbed_optimizer
>>> from keras_newton.smoothing.solvers import one_hot_argmax
>>> theta = tf.constant([[0.0, 1.0, 2.0]])
>>> perturbed_optimizer(one_hot_argmax, theta, num_samples=100,
...                     sigma=1.0, noise="gumbel", seed=[1, 2]).shape
TensorShape([1, 3])

References:
  Berthet, Blondel, Teboul, Cuturi, Vert & Bach, "Learning with
  Differentiable Perturbed Optimizers", NeurIPS 2020 (arXiv:2002.08676).
"""

from typing import Callable, Tuple

import tensorflow as tf

from keras_newton.smoothing.stochastic_smoothing import (
    SmoothedEstimate,
    perturb,
    smoothed_function,
    smoothed_jacobian,
    validate_smoothing_args,
)


def _solver_on_flat(solver: Callable, shape) -> Callable:
    """Adapts ``solver`` on ``[..., *shape]`` to flattened ``[S, N, m]`` inputs."""
    m = shape.num_elements()

    def solve(flat):
        leading = tf.shape(flat)[:-1]
        solutions = solver(tf.reshape(flat, tf.concat([leading, shape], 0)))
        return tf.reshape(solutions, tf.concat([leading, [m]], 0))

    return solve


def _flatten(theta) -> Tuple[tf.Tensor, tf.TensorShape]:
    theta = tf.convert_to_tensor(theta)
    if theta.shape.rank is None or theta.shape.rank < 2:
        raise ValueError(f"theta must have shape [N, ...]; got shape {theta.shape}.")
    shape = theta.shape[1:]
    if not shape.is_fully_defined():
        raise ValueError(f"theta must have static non-batch axes; got shape {theta.shape}.")
    return tf.reshape(theta, [-1, shape.num_elements()]), shape


def perturbed_optimizer(
    solver: Callable[[tf.Tensor], tf.Tensor],
    theta,
    *,
    num_samples: int = 10,
    sigma: float = 1.0,
    noise: str = "normal",
    seed,
) -> tf.Tensor:
    """Monte-Carlo ``ŷ_ε(θ)`` that backpropagates the Jacobian estimate.

    Args:
      solver: batched solver ``[..., *shape] -> [..., *shape]``.
      theta: ``[N, *shape]`` solver inputs.
      num_samples: Monte-Carlo samples ``S``.
      sigma: noise scale ``σ > 0``.
      noise: ``"normal"``, ``"logistic"``, ``"cauchy"`` or ``"gumbel"``.
      seed: ``[2]`` stateless seed.

    Returns:
      ``[N, *shape]`` mean of the perturbed solutions; its vector-Jacobian
      product is that of ``E[y*(θ+σZ) ∇ν(Z)ᵀ] / σ``.
    """
    flat, shape = _flatten(theta)
    mean = smoothed_function(
        _solver_on_flat(solver, shape), flat, sigma=sigma, num_samples=num_samples,
        seed=seed, noise=noise, control_variate=False,
    )
    return tf.reshape(mean, tf.shape(theta))


def perturbed_jacobian(
    solver: Callable[[tf.Tensor], tf.Tensor],
    theta,
    *,
    num_samples: int = 10,
    sigma: float = 1.0,
    noise: str = "normal",
    seed,
    symmetrize: bool = True,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """``ŷ_ε(θ)`` ``[N, *shape]`` and its Jacobian estimate ``[N, m, m]``.

    Arguments as for :func:`perturbed_optimizer`; ``symmetrize`` returns
    ``(J + Jᵀ)/2``, the estimate of the (symmetric) Hessian of ``F_ε``.
    """
    flat, shape = _flatten(theta)
    mean, jacobian = smoothed_jacobian(
        _solver_on_flat(solver, shape), flat, sigma=sigma, num_samples=num_samples,
        seed=seed, noise=noise, control_variate=False,
    )
    if symmetrize:
        jacobian = 0.5 * (jacobian + tf.linalg.matrix_transpose(jacobian))
    return tf.reshape(mean, tf.shape(theta)), jacobian


def fenchel_young_estimate(
    solver: Callable[[tf.Tensor], tf.Tensor],
    theta,
    y_true,
    *,
    sense: str = "max",
    num_samples: int = 10,
    sigma: float = 1.0,
    noise: str = "normal",
    seed,
    hessian: bool = False,
) -> SmoothedEstimate:
    """Perturbed Fenchel-Young loss per sample, with gradient and Hessian estimates.

    With ``s = +1`` for a maximizing and ``s = -1`` for a minimizing solver,

    .. math::

        L(\\theta; y) = s\\,\\big(F_\\varepsilon(\\theta) - \\langle \\theta, y\\rangle\\big)
            \\ge 0, \\quad
        \\nabla L = s\\,(\\hat y_\\varepsilon(\\theta) - y), \\quad
        \\nabla^2 L \\approx \\tfrac{s}{2}(J + J^\\top),\\;
        J = \\tfrac1\\sigma E[y^\\star(\\theta+\\sigma Z)\\nabla\\nu(Z)^\\top],

    where ``F_ε(θ) = E[⟨θ + σZ, y*(θ + σZ)⟩]`` (the regularizer ``Ω(y)``
    is a constant in ``θ`` and omitted). For maximizers this is Berthet et
    al.'s gradient ``ŷ_ε - y``; a minimizer (shortest path on costs) is the
    maximizer of ``-θ``, hence the sign.

    Args:
      solver: batched solver ``[..., *shape] -> [..., *shape]``.
      theta: ``[N, *shape]`` inputs; y_true: ``[N, *shape]`` target solutions.
      sense: ``"max"`` or ``"min"``, what the solver does with ``⟨θ, w⟩``.
      num_samples, sigma, noise, seed: as for :func:`perturbed_optimizer`.
      hessian: also return the symmetrized Hessian estimate ``[N, m, m]``.

    Returns:
      :class:`SmoothedEstimate`: the value ``[N]`` (backpropagating the
      gradient estimate), the gradient ``[N, m]`` and the Hessian or ``None``.
    """
    if sense not in ("min", "max"):
        raise ValueError(f"Unknown sense={sense!r}; expected 'min' or 'max'.")
    sign = 1.0 if sense == "max" else -1.0
    num_samples, sigma, noise = validate_smoothing_args(num_samples, sigma, noise)
    flat, shape = _flatten(theta)
    target = tf.reshape(tf.cast(y_true, flat.dtype), tf.shape(flat))
    perturbed_theta, sample = perturb(flat, num_samples, sigma, noise, seed)
    perturbed_theta = tf.stop_gradient(perturbed_theta)
    solutions = tf.stop_gradient(_solver_on_flat(solver, shape)(perturbed_theta))
    expected = tf.reduce_mean(solutions, 0)
    smoothed_max = tf.reduce_mean(tf.reduce_sum(perturbed_theta * solutions, -1), 0)
    gradient = sign * (expected - target)
    value = sign * (smoothed_max - tf.reduce_sum(tf.stop_gradient(flat) * target, -1))
    value = value + tf.reduce_sum(
        tf.stop_gradient(gradient) * (flat - tf.stop_gradient(flat)), -1
    )
    if not hessian:
        return SmoothedEstimate(value, gradient, None)
    jacobian = tf.einsum("snk,snm->nkm", solutions, sample.score) / (num_samples * sigma)
    symmetric = 0.5 * (jacobian + tf.linalg.matrix_transpose(jacobian))
    return SmoothedEstimate(value, gradient, sign * symmetric)
