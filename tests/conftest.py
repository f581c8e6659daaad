"""Shared test helpers: execution modes, as TensorFlow Probability's tests do."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Most of an XLA test's time is LLVM compiling tiny graphs; its lowest
# optimization level compiles them about a fifth faster here. The operations
# are the same; results may differ in the last bits, as between eager and
# XLA, which every tolerance of the suite already allows. Subprocesses of
# tests inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import numpy as np
import pytest
import tensorflow as tf

EXECUTION_MODES = ("eager", "function", "xla")


def run_in_mode(mode, fn, *args, **kwargs):
    """Runs ``fn(*args, **kwargs)`` eagerly, in ``tf.function`` or under XLA.

    Returns the result converted to NumPy (nested structures are preserved).
    """
    if mode == "eager":
        out = fn(*args, **kwargs)
    elif mode == "function":
        out = tf.function(fn, jit_compile=False)(*args, **kwargs)
    elif mode == "xla":
        out = tf.function(fn, jit_compile=True)(*args, **kwargs)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return tf.nest.map_structure(
        lambda t: t.numpy() if hasattr(t, "numpy") else t, out
    )


@pytest.fixture(params=EXECUTION_MODES)
def mode(request):
    """Parameterizes a test over eager, tf.function and XLA execution."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)
