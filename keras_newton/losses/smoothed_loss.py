"""Stochastic smoothing as a Keras loss, with Newton curvature estimates.

Two ways to train through a non-differentiable algorithm ``f`` (e.g. the
exact shortest path) with noise ``ε = σZ``, ``Z ~ μ ∝ exp(-ν)``:

* ``smoothing="loss"`` smooths the whole per-sample loss
  ``φ(y) = ℓ(y_true, f(y))``: the value is ``E[φ(y + σZ)]`` and Lemma 4 of
  Petersen et al. (2024) estimates its gradient **and** Hessian, so every
  Newton curvature works.
* ``smoothing="algorithm"`` smooths only the algorithm,
  ``f_σ(y) = E[f(y + σZ)]`` with Jacobian estimate
  ``E[(f(y+σZ) - f(y)) ∇ν(Z)ᵀ] / σ``, and backpropagates through the
  (differentiable) loss ``ℓ(y_true, f_σ(y))``. Its Hessian is intractable,
  so only ``curvature="fisher"`` is supported.

.. math::

    g = \\tfrac1\\sigma E[(\\varphi(y+\\sigma Z) - \\varphi(y))\\nabla\\nu(Z)],
    \\quad
    H = \\tfrac1{\\sigma^2} E[(\\varphi(y+\\sigma Z) - \\varphi(y))
        (\\nabla\\nu\\nabla\\nu^\\top - \\nabla^2\\nu)] .

Example:

>>> import tensorflow as tf
>>> from keras_newton.losses import SmoothedLoss
>>> from keras_newton.shortest_path import shortest_path
>>> costs = tf.random.stateless_uniform([2, 5, 5], seed=[1, 2]) + 0.5
>>> loss = SmoothedLoss("hamming", algorithm="shortest_path", sigma=0.3,
...                     num_samples=3, seed=0)
>>> float(loss(shortest_path(costs), costs)) >= 0.0
True

References:
  Abernethy et al., "Online Linear Optimization via Smoothing", COLT 2014.
  Petersen et al., "Newton Losses", NeurIPS 2024, Lemma 4 (arXiv:2410.19055).
"""

from typing import Optional

import keras
import tensorflow as tf

# The Newton core's public helpers (this package stays its sibling).
from keras_newton.newton._autodiff import per_sample_loss_fn
from keras_newton.newton._derivatives import resolve_loss
from keras_newton.newton._protocol import shape_errors_named
from keras_newton.smoothing._seeding import make_seed_generator, next_seed, validate_seed
from keras_newton.smoothing.oracles import get_solver
from keras_newton.smoothing.stochastic_smoothing import (
    smoothed_function,
    smoothed_loss_derivatives,
    validate_smoothing_args,
)

SMOOTHINGS = ("loss", "algorithm")


@keras.saving.register_keras_serializable(package="keras_newton")
def hamming_distance(y_true, y_pred):
    """Per-sample mean of ``|y_true - y_pred|``: the normalized Hamming distance of 0/1 masks."""
    y_pred = tf.convert_to_tensor(y_pred)
    difference = tf.abs(tf.cast(y_true, y_pred.dtype) - y_pred)
    return tf.reduce_mean(difference, axis=list(range(1, y_pred.shape.rank)))


def _resolve(loss):
    return hamming_distance if loss == "hamming" else resolve_loss(loss)


@keras.saving.register_keras_serializable(package="keras_newton")
class SmoothedLoss(keras.losses.Loss):
    """Stochastically smoothed loss of an algorithm's output (Monte-Carlo).

    ``call(y_true, y_pred)`` returns per-sample values ``[N]`` whose gradient
    is the smoothing estimator; ``per_sample_derivatives`` implements the
    curvature protocol of :mod:`keras_newton.newton._protocol`. Noise is redrawn on
    every call from a ``keras.random.SeedGenerator`` started at ``seed``
    (reproducible, XLA-compilable; see :mod:`keras_newton.smoothing.seeding`).

    Args:
      loss: the loss ``ℓ(y_true, ·)``: ``"hamming"``, a Keras loss name or
        instance, or a registered function returning per-sample values.
      algorithm: ``None`` (smooth ``ℓ(y_true, y)`` itself) or a solver name
        registered in :mod:`keras_newton.smoothing.solvers`
        (``"shortest_path"``, ``"argmax"``) or its function.
      smoothing: ``"loss"`` (gradient and Hessian) or ``"algorithm"``
        (Jacobian of the algorithm; Fisher only; needs ``algorithm``).
      num_samples: Monte-Carlo samples per step (the paper uses 3, 10, 30).
      sigma: noise scale ``σ > 0``.
      noise: ``"normal"``, ``"logistic"``, ``"cauchy"`` or ``"gumbel"``.
      seed: ``None`` or a non-negative int.
      name, reduction, dtype: as for ``keras.losses.Loss``.
    """

    def __init__(
        self,
        loss="hamming",
        algorithm="shortest_path",
        smoothing: str = "loss",
        num_samples: int = 10,
        sigma: float = 1.0,
        noise: str = "normal",
        seed: Optional[int] = None,
        name: str = "smoothed_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if smoothing not in SMOOTHINGS:
            raise ValueError(f"Unknown smoothing={smoothing!r}; expected one of {SMOOTHINGS}.")
        if smoothing == "algorithm" and algorithm is None:
            raise ValueError("smoothing='algorithm' needs an algorithm (e.g. 'shortest_path').")
        self.num_samples, self.sigma, self.noise = validate_smoothing_args(
            num_samples, sigma, noise
        )
        self.solver = None if algorithm is None else get_solver(algorithm)
        self.loss_spec = loss
        self.loss = _resolve(loss)
        self.per_sample = per_sample_loss_fn(self.loss)
        # On the tiled batch of noisy copies; _flat_fn names the caller's shapes.
        self._tiled_per_sample = per_sample_loss_fn(self.loss, name_shapes=False)
        self.smoothing = smoothing
        self.seed = validate_seed(seed)
        self.seed_generator = make_seed_generator(self.seed)

    @property
    def provides_hessian(self) -> bool:
        """Hessian estimates exist only when the whole loss is smoothed."""
        return self.smoothing == "loss"

    def _algorithm(self, y):
        return y if self.solver is None else self.solver.fn(y)

    def _flat_fn(self, y_true, y_pred, composed: bool):
        """``[S, N, m] -> [S, N]`` per-sample loss (or ``[S, N, m]`` algorithm)."""
        shape = y_pred.shape[1:]
        m = shape.num_elements()

        def fn(flat):
            copies, batch = tf.shape(flat)[0], tf.shape(flat)[1]
            y = tf.reshape(flat, tf.concat([[copies * batch], shape], 0))
            if not composed:
                return tf.reshape(self._algorithm(y), [copies, batch, m])
            tiled = tf.tile(y_true, tf.concat([[copies], tf.ones_like(tf.shape(y_true)[1:])], 0))
            # Errors name the caller's shapes, not those of the stacked copies.
            with shape_errors_named(self.loss, y_true, y_pred,
                                    detail=f"on {self.num_samples} stacked noisy copies"):
                values = self._tiled_per_sample(tiled, self._algorithm(y))
            return tf.reshape(values, [copies, batch])

        return fn

    def _prepare(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        if (
            y_pred.shape.rank is None
            or y_pred.shape.rank < 2
            or not y_pred.shape[1:].is_fully_defined()
        ):
            raise ValueError(
                f"y_pred must have shape [N, ...] with static axes; got {y_pred.shape}."
            )
        y_true = tf.convert_to_tensor(y_true)
        if y_true.dtype.is_floating:
            y_true = tf.cast(y_true, y_pred.dtype)
        shape = y_pred.shape[1:]
        options = dict(
            sigma=self.sigma, num_samples=self.num_samples, noise=self.noise,
            seed=next_seed(self.seed_generator),
        )
        return y_true, y_pred, tf.reshape(y_pred, [-1, shape.num_elements()]), options

    def _smoothed_loss(self, y_true, y_pred, hessian: bool):
        """Lemma 4 estimate of the smoothed whole loss (``smoothing="loss"``)."""
        y_true, y_pred, flat, options = self._prepare(y_true, y_pred)
        fn = self._flat_fn(y_true, y_pred, composed=True)
        return smoothed_loss_derivatives(fn, flat, hessian=hessian, **options)

    def _loss_of_smoothed_algorithm(self, y_true, y_pred):
        """``ℓ(y_true, E[f(y+σZ)])`` backpropagating the Jacobian estimate."""
        y_true, y_pred, flat, options = self._prepare(y_true, y_pred)
        fn = self._flat_fn(y_true, y_pred, composed=False)
        smoothed = smoothed_function(fn, flat, **options)
        return self.per_sample(y_true, tf.reshape(smoothed, tf.shape(y_pred)))

    def call(self, y_true, y_pred):
        if self.smoothing == "loss":
            return self._smoothed_loss(y_true, y_pred, hessian=False).value
        return self._loss_of_smoothed_algorithm(y_true, y_pred)

    def per_sample_derivatives(self, y_true, y_pred, hessian: bool):
        """Curvature protocol: gradients ``[N, m]`` and Hessians ``[N, m, m]`` or ``None``."""
        if self.smoothing == "loss":
            estimate = self._smoothed_loss(y_true, y_pred, hessian)
            return estimate.gradient, estimate.hessian
        if hessian:
            raise ValueError(
                "SmoothedLoss(smoothing='algorithm') cannot estimate Hessians (they "
                "are intractable when only the algorithm is smoothed); use "
                "curvature='fisher', or smoothing='loss' for Hessians."
            )
        y_pred = tf.stop_gradient(tf.convert_to_tensor(y_pred))
        with tf.GradientTape() as tape:
            tape.watch(y_pred)
            total = tf.reduce_sum(self._loss_of_smoothed_algorithm(y_true, y_pred))
        gradient = tape.gradient(total, y_pred)
        return tf.reshape(gradient, [-1, y_pred.shape[1:].num_elements()]), None

    def get_config(self):
        config = super().get_config()
        loss = self.loss_spec
        if not isinstance(loss, str):
            loss = keras.saving.serialize_keras_object(loss)
        config.update(
            loss=loss,
            algorithm=None if self.solver is None else self.solver.name,
            smoothing=self.smoothing,
            num_samples=self.num_samples,
            sigma=self.sigma,
            noise=self.noise,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("loss"), dict):
            config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
