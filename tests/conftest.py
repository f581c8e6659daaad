"""Shared test helpers: execution modes, as TensorFlow Probability's tests do."""

import os
import socket

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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


def free_loopback_ports(count):
    """``count`` distinct free TCP ports on 127.0.0.1, for loopback worker clusters."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(params=EXECUTION_MODES)
def mode(request):
    """Parameterizes a test over eager, tf.function and XLA execution."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)
