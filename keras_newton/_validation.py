"""The argument checks of the package, in one wording.

Every constructor and op checks its Python arguments when it is built or
traced, with these functions, so that a bad value gets the same sentence
wherever it is passed:

- ``Unknown noise='x'; expected one of ('normal', ...).`` (:func:`one_of`)
- ``sigma must be a number, got 'x'.`` (TypeError) and
  ``sigma must be finite and > 0, got -1.0.`` (:func:`finite_number`)
- ``n_iter must be an int >= 1, got 0.`` and
  ``seed must be None or an int >= 0, got -1.`` (:func:`int_at_least`)

``name`` is the argument as the caller spells it (``"HessianEstimate.rank"``
where a spec part is meant).

Example:

>>> finite_number(0.5, "beta")
0.5
>>> int_at_least(None, "samples", allow_none=True) is None
True
"""

import math
import numbers
from typing import Iterable, Optional


def one_of(value, choices: Iterable, name: str):
    """Returns ``value`` if it is one of ``choices``.

    Args:
      value: the argument.
      choices: the allowed values.
      name: the argument's name in the message.

    Returns:
      ``value``.

    Raises:
      ValueError: ``value`` is not among ``choices``.
    """
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"Unknown {name}={value!r}; expected one of {choices}.")
    return value


def finite_number(value, name: str, minimum: float = 0.0, inclusive: bool = False) -> float:
    """Returns ``value`` as a float if it is a finite real above ``minimum``.

    Args:
      value: a Python or NumPy real (not a bool, not a tensor).
      name: the argument's name in the message.
      minimum: the bound.
      inclusive: whether ``value == minimum`` is allowed (``>=``) or not
        (``>``).

    Returns:
      ``float(value)``.

    Raises:
      TypeError: ``value`` is not a real number.
      ValueError: ``value`` is not finite or not above the bound.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    value = float(value)
    above = value >= minimum if inclusive else value > minimum
    if not math.isfinite(value) or not above:
        raise ValueError(f"{name} must be finite and {'>=' if inclusive else '>'} "
                         f"{minimum:g}, got {value!r}.")
    return value


def int_at_least(value, name: str, minimum: int = 1, allow_none: bool = False) -> Optional[int]:
    """Returns ``value`` if it is a Python int ``>= minimum`` (or ``None`` if allowed).

    Args:
      value: the argument.
      name: the argument's name in the message.
      minimum: the smallest allowed value.
      allow_none: whether ``None`` (an option left unset) is allowed.

    Returns:
      ``value``.

    Raises:
      ValueError: ``value`` is not such an int (bools are not).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = "None or " if allow_none else ""
        raise ValueError(f"{name} must be {none}an int >= {minimum}, got {value!r}.")
    return value
