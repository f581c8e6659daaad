"""Stochastic smoothing, noise distributions and perturbed optimizers."""

from keras_newton.smoothing.noise import NOISES, NoiseSample, sample_noise
from keras_newton.smoothing.perturbed import (
    fenchel_young_estimate,
    perturbed_jacobian,
    perturbed_optimizer,
)
from keras_newton.smoothing.oracles import Solver, get_solver, one_hot_argmax, register_solver
from keras_newton.smoothing.stochastic_smoothing import (
    SmoothedEstimate,
    smoothed_function,
    smoothed_jacobian,
    smoothed_loss_derivatives,
)

__all__ = [
    "NOISES",
    "NoiseSample",
    "SmoothedEstimate",
    "Solver",
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
