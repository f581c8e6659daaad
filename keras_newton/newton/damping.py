"""Damping rules: the Tikhonov ``λ`` of the damped Newton step.

Step (3a) of Petersen et al. (2024) solves ``(M + λI) s_i = g_i``; ``λ`` is on
the per-sample scale of ``M`` (so it means the same thing whatever the batch
size), and ``λ → ∞`` recovers gradient descent scaled by ``1/λ``
(Theorem 2). A damping rule says which ``λ`` a step uses. :class:`FixedDamping`
keeps one ``λ`` for the whole run;
:class:`~keras_newton.newton.adaptive_damping.AdaptiveDamping`
(Levenberg-Marquardt, Moré 1978; ``damping="adaptive"``) sets it every step
from the last step's ρ. Both have the members:

* ``value()``: the ``λ`` of this step, consumed by the damped solve only;
* ``positive``: whether ``λ > 0`` on every step, a static fact about the
  rule (no solver needs it any longer: the Woodbury solve takes ``λ = 0``);
* ``new_state()``: the variables a loss keeps across steps (``None`` for a
  fixed ``λ``).

Example:

>>> rule = FixedDamping(1e-2)
>>> rule.value(), rule.positive
(0.01, True)
>>> FixedDamping.from_config(rule.get_config()) == rule
True
"""

import numbers

import keras
import numpy as np

from keras_newton._validation import finite_number
from keras_newton.newton._configurable import Configurable


def validate_damping(damping) -> float:
    """Checks that ``damping`` is a finite real number ``>= 0``; returns a float.

    Python and NumPy scalars are accepted (``0.1``, ``np.float32(0.1)``,
    ``np.int64(1)``). Tensors are not: damping is validated, and chooses a
    solver, when a loss or model is built, before any value is traced.

    Example:

    >>> import numpy as np
    >>> validate_damping(np.float32(0.5))
    0.5
    """
    if isinstance(damping, (bool, np.bool_)) or not isinstance(damping, numbers.Real):
        raise TypeError(
            "damping must be a Python or NumPy real number (it is checked when "
            f"the loss is built, so not a tensor), got {damping!r}."
        )
    return finite_number(damping, "damping", inclusive=True)


@keras.saving.register_keras_serializable(package="keras_newton")
class FixedDamping(Configurable):
    """The same Tikhonov ``λ >= 0`` on every step (the paper's setting).

    Args:
      value: ``λ``, a finite Python or NumPy real ``>= 0`` (stored as a
        float, so configs stay JSON).
    """

    def __init__(self, value: float = 1e-3):
        self._value = validate_damping(value)

    def value(self) -> float:
        """The ``λ`` of the current step."""
        return self._value

    @property
    def positive(self) -> bool:
        """Whether ``λ > 0`` on every step."""
        return self._value > 0

    def new_state(self):
        """A fixed ``λ`` keeps no state between steps."""
        return None

    def get_config(self) -> dict:
        return {"value": self._value}


def as_damping_rule(damping):
    """A damping rule from a rule, a number (a :class:`FixedDamping`), ``"adaptive"``
    (an :class:`~keras_newton.newton.adaptive_damping.AdaptiveDamping` with its
    defaults) or a config.

    Example:

    >>> as_damping_rule(0.5)
    FixedDamping(value=0.5)
    >>> type(as_damping_rule("adaptive")).__name__
    'AdaptiveDamping'
    """
    if isinstance(damping, str):
        if damping != "adaptive":  # the only string; "0.1" is not a number
            raise TypeError(
                f"damping must be a number >= 0, 'adaptive' or a damping rule, got {damping!r}.")
        from keras_newton.newton.adaptive_damping import AdaptiveDamping

        return AdaptiveDamping()
    if isinstance(damping, dict):
        return keras.saving.deserialize_keras_object(damping)
    if callable(getattr(damping, "value", None)) and hasattr(damping, "positive"):
        return damping
    return FixedDamping(damping)
