"""Stochastic smoothing, noise distributions and perturbed optimizers."""

from keras_newton.smoothing.noise import NOISES, NoiseSample, sample_noise
from keras_newton.smoothing.perturbed import (
    fenchel_young_estimate,
    perturbed_jacobian,
    perturbed_optimizer,
)
from keras_newton._deprecation import moved_names
from keras_newton.smoothing.oracles import Oracle, get_solver, one_hot_argmax, register_solver
from keras_newton.smoothing.stochastic_smoothing import (
    SmoothedEstimate,
    smoothed_function,
    smoothed_jacobian,
    smoothed_loss_derivatives,
)

__all__ = [
    "NOISES",
    "NoiseSample",
    "Oracle",
    "SmoothedEstimate",
    "fenchel_young_estimate",
    "get_solver",
    "one_hot_argmax",
    "perturbed_jacobian",
    "perturbed_optimizer",
    "register_solver",
    "sample_noise",
    "smoothed_function",
    "smoothed_jacobian",
    "smoothed_loss_derivatives",
]

# Renamed: kn.smoothing.Solver was a second public class named like the Newton
# step's kn.newton.Solver.
__getattr__ = moved_names(__name__, {"Solver": ("keras_newton.smoothing.oracles", "Oracle")})
