"""Adaptive damping: Levenberg-Marquardt adaptation of the Newton loss's ``λ``.

The damped Newton step of Petersen et al. (2024), eq. (3a), needs a
Tikhonov ``λ`` whose best value depends on the loss (the paper searches a
grid of 1e-3 … 1e3 per method). :class:`AdaptiveDamping` removes that
search with the trust-region rule of Levenberg-Marquardt (Moré 1978), as
K-FAC adapts its damping (Martens & Grosse 2015, §6.5), applied in output
space. Every step compares the reduction of the loss that the quadratic
model of the solve predicts for the step ``d_i = z*_i - y_i``,

.. math::

    \\text{pred} = -\\sum_i \\big(g_iᵀ d_i + \\tfrac12 d_iᵀ \\tilde M d_i\\big)
                 = \\tfrac12 \\sum_i \\big(g_iᵀ s_i + λ \\lVert s_i \\rVert^2\\big),
    \\qquad s_i = (\\tilde M + λI)^{-1} g_i = -d_i,

(``M̃``: the curvature with negative eigenvalues treated as the solver's
``indefinite`` says; the identity holds for exact solves and for conjugate
gradient iterates, which are Galerkin), with the actual reduction
``Σ_i ℓ_i(y_i) - ℓ_i(z*_i)`` (one more evaluation of the loss), and sets
the ``λ`` of the *next* step from ``ρ = actual / pred``:

* ``ρ < low`` (¼): the model over-promised, ``λ ← λ · factor``;
* ``ρ > high`` (¾): the model is trusted, ``λ ← λ / factor``;
* a non-finite or non-positive ``pred``, or a non-finite actual
  reduction: ``λ ← λ · factor`` (never lower ``λ`` on evidence that is not
  there).

Scale. ``λ`` is kept as a *ratio* ``r`` to the curvature's own scale
``κ = ‖M‖_F / √m`` (the root-mean-square eigenvalue, see
:mod:`keras_newton.newton.curvature_scale`): the step uses ``λ = r · κ`` of
its batch, so one default works for losses of any scale and ``λ`` follows
the curvature as it grows or vanishes during training. ``r`` is clamped to
``[minimum, maximum]``; at ``r = minimum`` the step is the Newton step to
a relative ``1e-6``.

Defaults: ``initial=1e-2`` (a Newton step that starts close to undamped),
``factor=1.5`` (Moré's and K-FAC's rules use factors between 1.05 and 2;
per step 1.5 moves ``λ`` a decade in six steps, fast enough to track, slow
enough that one noisy batch cannot swing it), ``low=¼``, ``high=¾``
(Moré 1978; Nocedal & Wright, Algorithm 4.1), ``minimum=1e-6``,
``maximum=1e6``.

Example:

>>> rule = AdaptiveDamping()
>>> rule.positive
True
>>> round(float(next_ratio(1e-2, actual=1.0, predicted=1.0, rule=rule)), 6)  # ρ = 1
0.006667
>>> round(float(next_ratio(1e-2, actual=-1.0, predicted=1.0, rule=rule)), 6)  # overshoot
0.015

References:
  Moré, "The Levenberg-Marquardt algorithm: implementation and theory",
  Numerical Analysis, Lecture Notes in Mathematics 630, 1978.
  Martens & Grosse, "Optimizing Neural Networks with Kronecker-factored
  Approximate Curvature", ICML 2015, §6.5.
  Petersen et al., "Newton Losses", NeurIPS 2024, arXiv:2410.19055.
"""

import math

import keras
import tensorflow as tf

from keras_newton.newton._configurable import Configurable


def _positive_number(name: str, value, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"AdaptiveDamping {name} must be a finite number, got {value!r}.")
    if value <= minimum:
        raise ValueError(f"AdaptiveDamping {name} must be > {minimum:g}, got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="keras_newton")
class AdaptiveDamping(Configurable):
    """Levenberg-Marquardt damping relative to the curvature's scale (see module).

    Args:
      initial: the first step's ratio ``r = λ / κ``.
      factor: ``> 1``; ``r`` is multiplied or divided by it.
      low, high: ``0 < low < high``; ``ρ`` below ``low`` raises ``r``, above
        ``high`` lowers it.
      minimum, maximum: bounds of ``r``, ``0 < minimum <= initial <= maximum``.
    """

    def __init__(self, initial: float = 1e-2, factor: float = 1.5, low: float = 0.25,
                 high: float = 0.75, minimum: float = 1e-6, maximum: float = 1e6):
        self.initial = _positive_number("initial", initial)
        self.factor = _positive_number("factor", factor, 1.0)
        self.low = _positive_number("low", low)
        self.high = _positive_number("high", high)
        self.minimum = _positive_number("minimum", minimum)
        self.maximum = _positive_number("maximum", maximum)
        if not self.low < self.high:
            raise ValueError(f"AdaptiveDamping needs low < high, got {low!r} and {high!r}.")
        if not self.minimum <= self.initial <= self.maximum:
            raise ValueError("AdaptiveDamping needs minimum <= initial <= maximum, got "
                             f"{minimum!r}, {initial!r}, {maximum!r}.")

    def value(self):
        raise ValueError(
            "AdaptiveDamping has no fixed λ: it is kept by the state of a NewtonLoss or "
            "NewtonLossModel (new_state()) and set each step from the curvature's scale.")

    @property
    def positive(self) -> bool:
        """``λ = r·κ`` with ``r >= minimum > 0`` (κ is floored), so always positive."""
        return True

    def new_state(self) -> "DampingState":
        """The variables that carry ``r`` from step to step."""
        return DampingState(self)

    def get_config(self) -> dict:
        return {"initial": self.initial, "factor": self.factor, "low": self.low,
                "high": self.high, "minimum": self.minimum, "maximum": self.maximum}


def next_ratio(ratio, actual, predicted, rule: AdaptiveDamping) -> tf.Tensor:
    """The ratio ``r`` of the next step after a step with these reductions.

    Args:
      ratio: this step's ``r``.
      actual: ``Σ_i ℓ_i(y_i) - ℓ_i(z*_i)`` over the global batch.
      predicted: the quadratic model's predicted reduction (module docstring).
      rule: the :class:`AdaptiveDamping` constants.
    """
    ratio = tf.convert_to_tensor(ratio, tf.float32)
    actual = tf.cast(actual, tf.float32)
    predicted = tf.cast(predicted, tf.float32)
    trusted = tf.logical_and(tf.math.is_finite(actual),
                             tf.logical_and(tf.math.is_finite(predicted), predicted > 0))
    rho = actual / tf.where(trusted, predicted, tf.ones_like(predicted))
    up = tf.logical_or(tf.logical_not(trusted), rho < rule.low)
    down = tf.logical_and(trusted, rho > rule.high)
    ratio = tf.where(up, ratio * rule.factor, tf.where(down, ratio / rule.factor, ratio))
    return tf.clip_by_value(ratio, rule.minimum, rule.maximum)


class DampingState(tf.Module):
    """The adaptive ratio ``r`` and what the last step used, as variables.

    Attributes:
      ratio: ``r = λ / κ`` of the next step.
      damping: the ``λ`` the last step used (for logging).
      reduction_ratio: the last step's ``ρ`` (NaN where it was not trusted).
      adapting: Python flag read when a step is traced; off, the step uses
        ``ratio`` without updating it (evaluation).

    The variables are created eagerly (lifted out of any ``tf.function``);
    under ``tf.distribute`` create the state inside the strategy's scope:
    every replica computes the same all-reduced values, and the first
    replica's are kept.
    """

    def __init__(self, rule: AdaptiveDamping, name: str = "damping_state"):
        super().__init__(name=name)
        self.rule = rule
        self.adapting = True
        with tf.init_scope():
            kwargs = dict(trainable=False, dtype=tf.float32,
                          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.ratio = tf.Variable(rule.initial, name="ratio", **kwargs)
            self.damping = tf.Variable(float("nan"), name="damping", **kwargs)
            self.reduction_ratio = tf.Variable(float("nan"), name="reduction_ratio", **kwargs)

    def update(self, damping, actual, predicted) -> None:
        """Records this step's ``λ`` and ``ρ`` and sets the next step's ratio."""
        trusted = tf.logical_and(tf.math.is_finite(actual),
                                 tf.logical_and(tf.math.is_finite(predicted), predicted > 0))
        rho = tf.where(trusted, actual / tf.where(trusted, predicted, 1.0), float("nan"))
        self.damping.assign(tf.cast(damping, tf.float32))
        self.reduction_ratio.assign(tf.cast(rho, tf.float32))
        self.ratio.assign(next_ratio(self.ratio, actual, predicted, self.rule))

    def values(self) -> dict:
        """The variables' values by name (what a saved model stores)."""
        return {"ratio": self.ratio, "damping": self.damping,
                "reduction_ratio": self.reduction_ratio}

    def assign(self, values: dict) -> None:
        """Restores :meth:`values` (from a saved model)."""
        for key, variable in self.values().items():
            variable.assign(tf.cast(values[key], tf.float32))
