"""Perturbed Fenchel-Young loss (Berthet et al., 2020) with Newton curvature.

For a solver ``y*(θ)`` optimizing ``⟨θ, w⟩`` over a finite set (paths,
one-hot vectors) and its perturbed optimizer ``ŷ_ε(θ) = E[y*(θ + σZ)]``,

.. math::

    L(\\theta; y) = s\\,(F_\\varepsilon(\\theta) - \\langle\\theta, y\\rangle),
    \\quad \\nabla L = s\\,(\\hat y_\\varepsilon(\\theta) - y), \\quad
    \\nabla^2 L \\approx \\tfrac{s}{2\\sigma}
        \\big(E[y^\\star(\\theta + \\sigma Z)\\nabla\\nu(Z)^\\top] + (\\cdot)^\\top\\big),

with ``F_ε(θ) = E[⟨θ + σZ, y*(θ + σZ)⟩]`` and ``s = +1`` for maximizers
(Berthet et al.'s ``∇L = ŷ_ε - y``) or ``s = -1`` for minimizers such as the
shortest path on predicted *costs* (then ``∇L = y - ŷ_ε``, which lowers the
cost of the true path's cells). ``L ≥ 0`` up to Monte-Carlo error.

Example:

>>> import tensorflow as tf
>>> from keras_newton.losses import FenchelYoungLoss
>>> from keras_newton.shortest_path import shortest_path
>>> costs = tf.random.stateless_uniform([2, 5, 5], seed=[1, 2]) + 0.5
>>> loss = FenchelYoungLoss("shortest_path", num_samples=3, sigma=0.5, seed=0)
>>> float(loss(shortest_path(costs), costs)) >= 0.0
True

References:
  Berthet, Blondel, Teboul, Cuturi, Vert & Bach, "Learning with
  Differentiable Perturbed Optimizers", NeurIPS 2020 (arXiv:2002.08676).
  Blondel, Martins & Niculae, "Learning with Fenchel-Young Losses", JMLR 2020.
  Petersen et al., "Newton Losses", NeurIPS 2024 (arXiv:2410.19055).
"""

from typing import Optional

import keras
import tensorflow as tf

from keras_newton.smoothing.perturbed import fenchel_young_estimate
from keras_newton.smoothing._seeding import make_seed_generator, next_seed, validate_seed
from keras_newton.smoothing.oracles import get_solver
from keras_newton.smoothing.stochastic_smoothing import validate_smoothing_args


@keras.saving.register_keras_serializable(package="keras_newton")
class FenchelYoungLoss(keras.losses.Loss):
    """Perturbed Fenchel-Young loss of a registered solver (Monte-Carlo).

    ``call(y_true, y_pred)`` takes target solutions (e.g. true path masks)
    and solver inputs ``θ`` (e.g. predicted cost maps) of the same shape
    ``[N, ...]`` and returns per-sample values ``[N]`` whose gradient is
    ``s (ŷ_ε(θ) - y_true)``. ``per_sample_derivatives`` (curvature protocol)
    supplies that gradient and the symmetrized Hessian estimate, so every
    Newton curvature works. Noise is redrawn on every call from a
    ``keras.random.SeedGenerator`` started at ``seed``.

    Args:
      solver: a solver name registered in
        :mod:`keras_newton.smoothing.solvers` (``"shortest_path"``,
        ``"argmax"``) or its function; its sense decides ``s``.
      num_samples: Monte-Carlo samples per step (the paper uses 3, 10, 30).
      sigma: noise scale ``σ > 0``.
      noise: ``"normal"``, ``"logistic"``, ``"cauchy"`` or ``"gumbel"``.
      seed: ``None`` or a non-negative int.
      name, reduction, dtype: as for ``keras.losses.Loss``.
    """

    provides_hessian = True

    def __init__(
        self,
        solver="shortest_path",
        num_samples: int = 10,
        sigma: float = 1.0,
        noise: str = "normal",
        seed: Optional[int] = None,
        name: str = "fenchel_young_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.solver = get_solver(solver)
        self.num_samples, self.sigma, self.noise = validate_smoothing_args(
            num_samples, sigma, noise
        )
        self.seed = validate_seed(seed)
        self.seed_generator = make_seed_generator(self.seed)

    def _estimate(self, y_true, y_pred, hessian: bool):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.convert_to_tensor(y_true)
        if not y_true.shape.is_compatible_with(y_pred.shape):
            raise ValueError(
                f"y_true (target solutions) must have the shape of y_pred; got "
                f"{y_true.shape} and {y_pred.shape}."
            )
        return fenchel_young_estimate(
            self.solver.fn,
            y_pred,
            y_true,
            sense=self.solver.sense,
            num_samples=self.num_samples,
            sigma=self.sigma,
            noise=self.noise,
            seed=next_seed(self.seed_generator),
            hessian=hessian,
        )

    def call(self, y_true, y_pred):
        return self._estimate(y_true, y_pred, hessian=False).value

    def per_sample_derivatives(self, y_true, y_pred, hessian: bool):
        """Curvature protocol: gradients ``[N, m]`` and Hessians ``[N, m, m]`` or ``None``."""
        estimate = self._estimate(y_true, y_pred, hessian)
        return estimate.gradient, estimate.hessian

    def get_config(self):
        config = super().get_config()
        config.update(
            solver=self.solver.name,
            num_samples=self.num_samples,
            sigma=self.sigma,
            noise=self.noise,
            seed=self.seed,
        )
        return config
