"""Argument checks shared by the sorters (trace-time, Python level).

XLA drops ``tf.debugging`` assertions, so everything that can be checked on
static shapes and static values is checked here, before any op is built.
"""

from __future__ import annotations

import numbers

import tensorflow as tf

_FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
_HALF_DTYPES = (tf.float16, tf.bfloat16)


def as_float_tensor(x, name: str) -> tf.Tensor:
    """Converts ``x`` to a floating tensor, rejecting integer/complex dtypes."""
    x = tf.convert_to_tensor(x)
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"`{name}` must have a floating dtype (float16, bfloat16, float32 or "
            f"float64), got {x.dtype.name}."
        )
    return x


def upcast_half(x: tf.Tensor) -> tf.Tensor:
    """Half-precision inputs are computed in float32 (epsilons underflow)."""
    return tf.cast(x, tf.float32) if x.dtype in _HALF_DTYPES else x


def static_length(x: tf.Tensor, name: str) -> int:
    """Returns the static size n of the last axis of ``x``; requires n >= 2."""
    if x.shape.rank is None or x.shape.rank < 1:
        raise ValueError(
            f"`{name}` must have rank >= 1 with the items on the last axis, "
            f"got shape {x.shape}."
        )
    n = x.shape[-1]
    if n is None:
        raise ValueError(
            f"The last axis of `{name}` (the number of items n) must be known "
            f"statically, got shape {x.shape}."
        )
    if n < 2:
        raise ValueError(
            f"Sorting needs at least 2 items on the last axis of `{name}`, got "
            f"n={n} (shape {x.shape})."
        )
    return int(n)


def check_positive(value, name: str, allow_zero: bool = False):
    """Checks a scalar hyper-parameter when its value is known statically."""
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Real) or tf.is_tensor(value)
    ):
        raise TypeError(f"`{name}` must be a real number, got {value!r}.")
    static = tf.get_static_value(value) if tf.is_tensor(value) else value
    if static is None:
        return value
    if tf.is_tensor(value) and tf.convert_to_tensor(value).shape.rank != 0:
        raise ValueError(f"`{name}` must be a scalar, got shape {value.shape}.")
    ok = static >= 0 if allow_zero else static > 0
    if not ok:
        bound = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be {bound}, got {float(static)}.")
    return value


def as_scalar(value, dtype: tf.DType) -> tf.Tensor:
    """Python numbers convert exactly (``tf.cast`` would round via float32)."""
    if tf.is_tensor(value):
        return tf.cast(value, dtype)
    return tf.constant(value, dtype)
