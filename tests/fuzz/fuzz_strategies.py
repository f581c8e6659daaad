"""Strategies and checks shared by the fuzz suite (issue 13).

Strategies draw batch sizes (including 0 and 1), output sizes, dtypes and
values: ordinary, huge, tiny, NaN, ±inf, ties and all-equal rows. Each
property is written once and registered twice by :func:`fuzz_tests`: with
the bounded ``fuzz_default`` profile, and ``slow``-marked with
``fuzz_slow``.

Profiles: ``fuzz_default`` keeps the whole suite well under two minutes on a
small CPU machine: few examples per property, derandomized (the same
examples every run, so its wall time is stable), no example database
written into the checkout. ``fuzz_slow`` (the ``slow``-marked twins, run
with ``-m slow``) draws many more, randomly. XLA compiles take seconds, so
there are no deadlines. They are registered here, not in a ``conftest.py``:
a second ``conftest`` module under ``tests/`` would shadow the one the other
test files import ``run_in_mode`` from.
"""

import re

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    # No "explain" phase: it writes patch files into .hypothesis/.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.register_profile("fuzz_default", max_examples=10, derandomize=True, **_COMMON)
settings.register_profile("fuzz_slow", max_examples=200, derandomize=False, **_COMMON)

DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)
BATCH_SIZES = st.sampled_from([0, 1, 3])
SPECIAL = (np.nan, np.inf, -np.inf)


def fuzz_tests(inner, *strategies, default_examples=None, slow_examples=None):
    """``(test, slow_test)``: ``inner`` under both profiles, ``@given(*strategies)``."""
    fast = settings(settings.get_profile("fuzz_default"),
                    **({"max_examples": default_examples} if default_examples else {}))
    slow = settings(settings.get_profile("fuzz_slow"),
                    **({"max_examples": slow_examples} if slow_examples else {}))
    return (fast(given(*strategies)(inner)),
            pytest.mark.slow(slow(given(*strategies)(inner))))


def _magnitude_elements(width):
    exact = np.float16 if width == 16 else np.float32  # representable values only
    ordinary = st.floats(-10, 10, width=width)
    huge = st.sampled_from([float(exact(v)) for v in (
        [1e4, -3e4] if width == 16 else [1e30, -3e38, 3e38])])
    tiny = st.sampled_from([float(exact(v)) for v in (
        [6e-8, -6e-8] if width == 16 else [1e-30, -1e-38])])
    return ordinary, huge, tiny


@st.composite
def value_arrays(draw, shape, dtype=tf.float32, special=True):
    """A NumPy array of ``shape`` (float64 for bfloat16; cast in TF).

    Kinds: ordinary values, a mix with huge / tiny values, ties (few
    distinct values), all equal, and, where ``special``, NaN / ±inf entries
    in some rows.
    """
    width = 16 if dtype == tf.float16 else 32
    np_dtype = {tf.float16: np.float16, tf.float64: np.float64}.get(dtype, np.float32)
    ordinary, huge, tiny = _magnitude_elements(width)
    kind = draw(st.sampled_from(["ordinary", "extreme", "ties", "equal"]))
    if kind == "ordinary":
        elements = ordinary
    elif kind == "extreme":
        elements = st.one_of(ordinary, huge, tiny)
    elif kind == "ties":
        elements = st.sampled_from([-1.0, 0.0, 2.0])
    else:
        elements = st.just(draw(ordinary))
    values = draw(hnp.arrays(np_dtype, shape, elements=elements))
    if special and values.size and draw(st.booleans()):
        rows = values.reshape(shape[0], -1)
        row = draw(st.integers(0, shape[0] - 1))
        column = draw(st.integers(0, rows.shape[1] - 1))
        rows[row, column] = draw(st.sampled_from(SPECIAL))
        values = rows.reshape(shape)
    return values


def as_tensor(values, dtype):
    return tf.cast(tf.constant(values), dtype)


def finite_rows(*arrays):
    """Which samples (axis 0) are finite in every array."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    rows = [np.isfinite(a.reshape(len(a), int(np.prod(a.shape[1:])))).all(axis=1)
            for a in arrays]
    return np.logical_and.reduce(rows)


def assert_error_names_argument(error, names):
    """A ValueError / TypeError whose message names one of ``names``."""
    assert isinstance(error, (ValueError, TypeError)), repr(error)
    message = str(error)
    assert any(re.search(rf"\b{re.escape(name)}\b", message) for name in names), message


def assert_modes_agree(eager, xla, dtype, scale=1.0):
    """Same NaN pattern, and values within the dtype's tolerance of each other."""
    eager, xla = np.asarray(eager, np.float64), np.asarray(xla, np.float64)
    np.testing.assert_array_equal(np.isnan(eager), np.isnan(xla))
    tolerance = {tf.float16: 2e-2, tf.bfloat16: 5e-2, tf.float32: 2e-3}.get(dtype, 1e-6)
    both = np.isfinite(eager) & np.isfinite(xla)
    np.testing.assert_allclose(eager[both], xla[both], rtol=tolerance,
                               atol=tolerance * scale)


class CompiledCache:
    """One ``tf.function(jit_compile=True)`` per key (options), reused across examples.

    XLA compiles are the cost of this suite; a function per option set lets
    TensorFlow reuse its traces for every shape and dtype seen before.
    """

    def __init__(self):
        self._functions = {}

    def get(self, key, make):
        if key not in self._functions:
            self._functions[key] = tf.function(make(), jit_compile=True)
        return self._functions[key]
