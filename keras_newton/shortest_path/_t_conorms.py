"""T-conorms (fuzzy "or") used to accumulate the relaxed traceback into a path.

.. math::

    a \\oplus_{\\text{prob}} b = a + b - ab, \\qquad
    a \\oplus_{\\text{ham},p} b = \\frac{a + b + (p - 2)ab}{1 + (p - 1)ab}, \\qquad
    a \\oplus_{\\text{yager}_1} b = \\min(1, a + b).

All three have 0 as neutral element and map ``[0, 1]²`` into ``[0, 1]``.

Example:

>>> from keras_newton.shortest_path.t_conorms import t_conorm_fn
>>> float(t_conorm_fn("probabilistic")(0.5, 0.5))
0.75

References:
  Klement, Mesiar & Pap, "Triangular Norms", Springer, 2000.
  Petersen et al., "Learning with Algorithmic Supervision via Continuous
  Relaxations", NeurIPS 2021 (arXiv:2110.05651).
"""

import math
from typing import Callable, Optional

import tensorflow as tf

from keras_newton._validation import one_of

T_CONORMS = ("probabilistic", "hamacher", "yager_1")


def validate_t_conorm(t_conorm: str, p: Optional[float]) -> Optional[float]:
    """Checks the t-conorm name and its parameter; returns ``p`` as a float."""
    one_of(t_conorm, T_CONORMS, "t_conorm")
    if t_conorm != "hamacher":
        if p is not None:
            raise ValueError(
                f"p is only used by t_conorm='hamacher'; got p={p!r} with "
                f"t_conorm={t_conorm!r}."
            )
        return None
    if p is None or isinstance(p, bool) or not isinstance(p, (int, float)):
        raise ValueError(f"t_conorm='hamacher' needs a number p >= 0, got p={p!r}.")
    if not math.isfinite(p) or p < 0:
        raise ValueError(f"p must be finite and >= 0 for t_conorm='hamacher', got {p!r}.")
    return float(p)


def t_conorm_fn(t_conorm: str, p: Optional[float] = None) -> Callable:
    """Returns the element-wise t-conorm ``(a, b) -> a ⊕ b`` named ``t_conorm``."""
    p = validate_t_conorm(t_conorm, p)
    if t_conorm == "probabilistic":
        return lambda a, b: a + b - a * b
    if t_conorm == "yager_1":
        return lambda a, b: tf.minimum(a + b, tf.ones_like(a + b))

    def hamacher(a, b):
        product = a * b
        numerator = a + b + (p - 2.0) * product
        denominator = 1.0 + (p - 1.0) * product
        # Only p = 0 at a = b = 1 gives 0/0; the limit there is 1.
        safe = denominator > 0
        ratio = numerator / tf.where(safe, denominator, tf.ones_like(denominator))
        return tf.where(safe, ratio, tf.ones_like(ratio))

    return hamacher
