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
:mod:`keras_newton.newton._curvature_scale`), so one default works for
losses of any scale and ``λ`` follows the curvature as it grows. ``r`` is
clamped to ``[minimum, maximum]``.

Trust radius. ``κ`` alone cannot bound the step: on a saturated loss (a
confidently wrong softmax) ``κ → 0`` while the gradient stays of order 1,
so ``λ = r·κ → 0`` and the step ``(M̃ + λI)^{-1} g`` grows without bound
(and a ``κ`` that underflows to 0 must not be replaced by a constant, or a
more saturated loss gets a *smaller* step). The rule is therefore a trust
region (Moré 1978; Nocedal & Wright, ch. 4) with a radius ``Δ`` in output
units: each step uses

.. math::

    λ = \max\Big(r\,κ,\; \frac{G}{Δ}\Big), \qquad G = \max_i \lVert g_i \rVert,

and since ``‖(M̃ + λI)^{-1} g_i‖ <= ‖g_i‖ / λ`` for ``M̃ ⪰ 0`` (every
curvature after the solver's ``indefinite`` treatment, the Fisher), no
sample's step is longer than ``Δ``; steps are also clipped to ``Δ``
(:func:`clip_to_radius`), which bounds conjugate gradients stopped at
negative curvature and rounding in any dtype (the solve runs in float32 or
wider, also under ``mixed_float16`` / ``mixed_bfloat16``). ``G/Δ`` is a
floor of ``κ`` that is monotone (a smaller ``κ`` never lowers ``λ``) and
scales with the loss as ``κ`` does. ``ρ`` adapts whichever term set
``λ``: ``r`` when ``r·κ >= G/Δ``, else ``Δ`` (``÷ factor`` where ``λ``
would rise, ``× factor`` where it would fall, clamped to
``[min_radius, max_radius]``), so ``λ`` moves by about ``factor`` per step
either way and is continuous where the terms meet. On a loss whose
quadratic model is good the radius grows until it no longer binds and the
rule is the plain Levenberg-Marquardt rule above.

Why the radius matters beyond saturation: the empirical Fisher's model
predicts ``½ Σ_i g_iᵀ(F + λI)^{-1} g_i ≈ ½ N·rank(F)`` for small ``λ``,
whatever the loss, so the first steps from a small ``r`` overshoot by
orders of magnitude (measured on the logistic sorting network: ρ < 0 and
Newton losses ~2000× their later values for ~20 steps, until ``r`` had
climbed from 1e-2 to 50). Those few huge targets inflate Adam's
second-moment estimate, which remembers them for thousands of steps and
shrinks the effective learning rate for the rest of a 2000-step run. With
the radius the first steps are at most ``Δ = 1`` long and the Fisher runs
are no longer below the baseline (``docs/adaptive/adaptive.md``).

Defaults: ``initial=1e-2`` (a Newton step that starts close to undamped),
``factor=1.5`` (Moré's and K-FAC's rules use factors between 1.05 and 2;
per step 1.5 moves ``λ`` a decade in six steps, fast enough to track, slow
enough that one noisy batch cannot swing it), ``low=¼``, ``high=¾``
(Moré 1978; Nocedal & Wright, Algorithm 4.1), ``minimum=1e-6``,
``maximum=1e6``, ``radius=1`` (one unit of the outputs, e.g. a logit: a
step that already changes a softmax by a factor e), ``min_radius=1e-6``,
``max_radius=1e6``.

Saved state. The ratio and the radius are variables saved with the model
(see :class:`DampingState`); a loaded ratio or radius that is not finite
and positive is reset to its initial value with a ``RuntimeWarning``.

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
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_newton.newton._configurable import Configurable
from keras_newton.newton._distribution import global_batch_rows

FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _positive_number(name: str, value, minimum: float = 0.0) -> float:
    """``value`` as a float ``> minimum`` inside float32's normal range (the state's dtype)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"AdaptiveDamping {name} must be a finite number, got {value!r}.")
    if value <= minimum:
        raise ValueError(f"AdaptiveDamping {name} must be > {minimum:g}, got {value!r}.")
    if not FLOAT32_TINY <= value <= FLOAT32_MAX:
        # A subnormal or overflowing value would be stored as 0, a
        # denormal or inf in the float32 state.
        raise ValueError(f"AdaptiveDamping {name} must lie in float32's normal range "
                         f"[{FLOAT32_TINY:.3g}, {FLOAT32_MAX:.3g}], got {value!r}.")
    return float(value)


def _ordered(names, values) -> None:
    low, middle, high = values
    if not low <= middle <= high:
        raise ValueError(f"AdaptiveDamping needs {names[0]} <= {names[1]} <= {names[2]}, got "
                         f"{names[0]}={low!r}, {names[1]}={middle!r}, {names[2]}={high!r}.")


@keras.saving.register_keras_serializable(package="keras_newton")
class AdaptiveDamping(Configurable):
    """Levenberg-Marquardt damping with a trust radius (see module).

    When to use it (``docs/adaptive/adaptive.md``: n = 10 sorting,
    2000 steps, two or three seeds, test exact match; the fixed λ stays the
    default of :class:`~keras_newton.newton.spec.NewtonStep`):

    * empirical Hessian: use it when λ is unknown. It was within noise of
      the best grid λ on NeuralSort, SoftSort, the logistic and the Cauchy
      network (6.53, 6.13, 5.60, 5.70 % against 5.87, 7.60, 4.60, 4.70 %;
      Welch p >= 0.15), with λ ranging from 1e-7 to 1 across these losses;
    * empirical Fisher: within noise of the best grid λ and of the baseline
      on the four sorting methods (p >= 0.12). On the relaxed shortest path
      it scored 26.0 % against 33.5 % for the tuned fixed λ = 0.01 (p = 0.20,
      two seeds), so prefer a fixed λ where one is known to work;
    * element-wise Hessian: not measured.

    Args:
      initial: the first step's ratio ``r = λ / κ``.
      factor: ``> 1``; ``r`` (or the radius) is multiplied or divided by it.
      low, high: ``0 < low < high``; ``ρ`` below ``low`` raises ``λ``, above
        ``high`` lowers it.
      minimum, maximum: bounds of ``r``, ``minimum <= initial <= maximum``.
      radius: the first step's trust radius ``Δ`` (output units): no
        sample's step is longer.
      min_radius, max_radius: bounds of ``Δ``,
        ``min_radius <= radius <= max_radius``.

    Every constant must be a finite number in float32's normal range
    (``1.18e-38 … 3.4e38``), since the state is float32.

    Raises:
      TypeError: for a constant that is not a finite number.
      ValueError: naming the argument, for a constant out of range or
        bounds out of order.
    """

    def __init__(self, initial: float = 1e-2, factor: float = 1.5, low: float = 0.25,
                 high: float = 0.75, minimum: float = 1e-6, maximum: float = 1e6,
                 radius: float = 1.0, min_radius: float = 1e-6, max_radius: float = 1e6):
        self.initial = _positive_number("initial", initial)
        self.factor = _positive_number("factor", factor, 1.0)
        self.low = _positive_number("low", low)
        self.high = _positive_number("high", high)
        self.minimum = _positive_number("minimum", minimum)
        self.maximum = _positive_number("maximum", maximum)
        self.radius = _positive_number("radius", radius)
        self.min_radius = _positive_number("min_radius", min_radius)
        self.max_radius = _positive_number("max_radius", max_radius)
        if not self.low < self.high:
            raise ValueError(f"AdaptiveDamping needs low < high, got {low!r} and {high!r}.")
        _ordered(("minimum", "initial", "maximum"), (self.minimum, self.initial, self.maximum))
        _ordered(("min_radius", "radius", "max_radius"),
                 (self.min_radius, self.radius, self.max_radius))

    def value(self):
        raise ValueError(
            "AdaptiveDamping has no fixed λ: it is kept by the state of a NewtonLoss or "
            "NewtonLossModel (new_state()) and set each step from the curvature's scale.")

    @property
    def positive(self) -> bool:
        """``λ >= max(r·κ, G/Δ) > 0`` (a positive fallback where both vanish)."""
        return True

    def new_state(self) -> "DampingState":
        """The variables that carry ``r`` and ``Δ`` from step to step."""
        return DampingState(self)

    def get_config(self) -> dict:
        return {"initial": self.initial, "factor": self.factor, "low": self.low,
                "high": self.high, "minimum": self.minimum, "maximum": self.maximum,
                "radius": self.radius, "min_radius": self.min_radius,
                "max_radius": self.max_radius}


def _trusted(actual, predicted):
    return tf.logical_and(tf.math.is_finite(actual),
                          tf.logical_and(tf.math.is_finite(predicted), predicted > 0))


def _moves(actual, predicted, rule):
    """``(up, down)``: whether ``λ`` goes up (ρ < low or untrusted) or down (ρ > high)."""
    actual = tf.cast(actual, tf.float32)
    predicted = tf.cast(predicted, tf.float32)
    trusted = _trusted(actual, predicted)
    rho = actual / tf.where(trusted, predicted, tf.ones_like(predicted))
    up = tf.logical_or(tf.logical_not(trusted), rho < rule.low)
    down = tf.logical_and(trusted, rho > rule.high)
    return up, down


def next_ratio(ratio, actual, predicted, rule: AdaptiveDamping) -> tf.Tensor:
    """The ratio ``r`` of the next step after a step with these reductions.

    Args:
      ratio: this step's ``r``.
      actual: ``Σ_i ℓ_i(y_i) - ℓ_i(z*_i)`` over the global batch.
      predicted: the quadratic model's predicted reduction (module docstring).
      rule: the :class:`AdaptiveDamping` constants.

    Returns:
      ``r · factor`` (ρ < low or untrusted), ``r / factor`` (ρ > high) or
      ``r``, clipped to ``[minimum, maximum]``.
    """
    ratio = tf.convert_to_tensor(ratio, tf.float32)
    up, down = _moves(actual, predicted, rule)
    ratio = tf.where(up, ratio * rule.factor, tf.where(down, ratio / rule.factor, ratio))
    return tf.clip_by_value(ratio, rule.minimum, rule.maximum)


def next_radius(radius, actual, predicted, rule: AdaptiveDamping) -> tf.Tensor:
    """The trust radius ``Δ`` of the next step: ``÷ factor`` where ``λ`` would go
    up, ``× factor`` where it would go down, clipped to ``[min_radius, max_radius]``."""
    radius = tf.convert_to_tensor(radius, tf.float32)
    up, down = _moves(actual, predicted, rule)
    radius = tf.where(up, radius / rule.factor, tf.where(down, radius * rule.factor, radius))
    return tf.clip_by_value(radius, rule.min_radius, rule.max_radius)


def trust_region_damping(ratio, radius, scale, gradients, usable=None):
    """This step's ``λ = max(r·κ, G/Δ)`` and whether the radius term set it.

    ``G = max_i ‖g_i‖`` over the usable samples of the global batch. For a
    curvature ``M̃ ⪰ 0`` (``indefinite="abs"`` or ``"clip"``, the Fisher)
    ``‖(M̃ + λI)^{-1} g_i‖ <= ‖g_i‖ / λ <= Δ``: no step leaves the radius.
    ``κ`` may be 0 (a saturated loss) or not finite (then treated as 0):
    ``G/Δ`` is the floor that keeps ``λ`` from vanishing with it, which is
    monotone (a smaller ``κ`` never gives a larger step) and scale-aware
    (it scales with the loss, as ``κ`` does). Where both vanish (no usable
    gradient, so every step is 0 anyway) ``λ = r``.

    Args:
      ratio, radius: ``r`` and ``Δ`` (scalars).
      scale: ``κ`` of :func:`keras_newton.newton._curvature_scale.curvature_scale`.
      gradients: ``[N, m]`` per-sample gradients.
      usable: ``[N, 1]`` booleans or ``None`` (all rows).

    Returns:
      ``(λ, bound)``: ``λ`` in the gradients' dtype, and a boolean scalar,
      true where ``G/Δ > r·κ`` (the radius, not the ratio, set ``λ``).
    """
    dtype = gradients.dtype
    norms = tf.norm(gradients, axis=1)
    keep = tf.math.is_finite(norms)
    if usable is not None:
        keep = tf.logical_and(keep, tf.reshape(usable, [-1]))
    local = tf.where(keep, norms, tf.zeros_like(norms))
    everyone = global_batch_rows(local[:, None])[:, 0]
    largest = tf.reduce_max(tf.concat([everyone, tf.zeros([1], dtype)], axis=0))
    ratio = tf.cast(ratio, dtype)
    scale = tf.cast(scale, dtype)
    scale = tf.where(tf.math.is_finite(scale), scale, tf.zeros_like(scale))
    from_ratio = ratio * scale
    from_radius = largest / tf.cast(radius, dtype)
    damping = tf.maximum(from_ratio, from_radius)
    good = tf.logical_and(tf.math.is_finite(damping), damping > 0)
    return tf.where(good, damping, ratio), tf.logical_and(good, from_radius > from_ratio)


def clip_to_radius(steps, radius):
    """Rows of ``steps`` shortened to at most ``radius``; returns ``(steps, c)``.

    ``c_i = min(1, Δ/‖s_i‖)`` (1 for non-finite rows, which are not taken).
    With ``λ`` from :func:`trust_region_damping` this changes nothing but
    rounding for positive semi-definite curvatures; it is what bounds the
    conjugate-gradient step that stops at negative curvature.
    """
    norms = tf.norm(steps, axis=1, keepdims=True)
    radius = tf.cast(radius, steps.dtype)
    shrink = tf.where(tf.logical_and(tf.math.is_finite(norms), norms > radius),
                      radius / tf.where(norms > 0, norms, tf.ones_like(norms)),
                      tf.ones_like(norms))
    return steps * shrink, shrink


class DampingState(tf.Module):
    """The adaptive ratio ``r``, the trust radius ``Δ``, and what the last step used.

    Attributes:
      ratio: ``r = λ / κ`` of the next step.
      radius: the trust radius ``Δ`` of the next step.
      damping: the ``λ`` the last step used (for logging).
      reduction_ratio: the last step's ``ρ`` (NaN where it was not trusted).
      adapting: Python flag read when a step is traced; off, the step uses
        ``ratio`` and ``radius`` without updating them (evaluation).

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
            self.radius = tf.Variable(rule.radius, name="radius", **kwargs)

    def update(self, damping, actual, predicted, bound=False) -> None:
        """Records this step's ``λ`` and ``ρ`` and sets the next step's ``r`` or ``Δ``.

        ``bound``: whether the radius set this step's ``λ``
        (:func:`trust_region_damping`); then ``ρ`` adapts ``Δ`` and ``r``
        keeps its value, otherwise ``r`` adapts and ``Δ`` keeps its value.
        Either way ``λ`` moves by about ``factor`` on the next batch, and
        ``λ`` is continuous where the two meet.
        """
        actual = tf.cast(actual, tf.float32)
        predicted = tf.cast(predicted, tf.float32)
        trusted = _trusted(actual, predicted)
        rho = tf.where(trusted, actual / tf.where(trusted, predicted, 1.0), float("nan"))
        bound = tf.convert_to_tensor(bound, tf.bool)
        self.damping.assign(tf.cast(damping, tf.float32))
        self.reduction_ratio.assign(tf.cast(rho, tf.float32))
        self.ratio.assign(tf.where(bound, self.ratio,
                                   next_ratio(self.ratio, actual, predicted, self.rule)))
        self.radius.assign(tf.where(bound, next_radius(self.radius, actual, predicted, self.rule),
                                    self.radius))

    def values(self) -> dict:
        """The variables' values by name (what a saved model stores)."""
        return {"ratio": self.ratio, "damping": self.damping,
                "reduction_ratio": self.reduction_ratio, "radius": self.radius}

    def assign(self, values: dict) -> None:
        """Restores :meth:`values` (from a saved model), checking ``r`` and ``Δ``.

        A damaged or tampered file can hold any number. ``ratio`` and
        ``radius`` that are finite and positive are clipped to the rule's
        bounds; one that is not finite or not positive (NaN, ±inf, <= 0)
        would stop training for good (a NaN is never cleared by clipping),
        so it is **reset to the rule's initial value with a warning**, and
        training proceeds. A file saved before the radius existed has no
        ``radius``: it starts at the rule's ``radius``. ``damping`` and
        ``reduction_ratio`` are logs (NaN is a valid "no step yet").
        """
        checked = {"ratio": (self.rule.initial, self.rule.minimum, self.rule.maximum),
                   "radius": (self.rule.radius, self.rule.min_radius, self.rule.max_radius)}
        for key, variable in self.values().items():
            if key not in values:
                if key in checked:
                    variable.assign(checked[key][0])
                continue
            value = np.asarray(values[key], dtype=np.float64)
            if key in checked:
                initial, low, high = checked[key]
                if value.shape != () or not np.isfinite(value) or value <= 0:
                    warnings.warn(
                        f"Loaded adaptive-damping state {key}={value!r} is not a finite "
                        f"positive number (a damaged weights file?); it is reset to the "
                        f"initial {key} {initial!r}.", RuntimeWarning, stacklevel=2)
                    value = initial
                value = float(np.clip(value, low, high))
            variable.assign(tf.cast(value, tf.float32))
