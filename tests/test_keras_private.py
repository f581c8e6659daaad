"""The Keras internals the package needs are in one module, and still where it takes them.

If a Keras upgrade moves one of them, the first test names it (and the
path it was expected at) instead of a loss or model failing downstream.
"""

import ast
import importlib
import os

import keras
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton import _keras_private

PACKAGE = os.path.dirname(os.path.abspath(kn.__file__))


@pytest.mark.parametrize("name, module", sorted(_keras_private.PRIVATE_PATHS.items()))
def test_each_private_keras_name_is_where_the_package_takes_it(name, module):
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"Keras {keras.__version__} moved {module}.{name}, which "
                    f"keras_newton/_keras_private.py imports: {error!r}")
    assert callable(found)


def test_the_private_names_still_do_what_the_package_relies_on():
    wrapped = _keras_private.LossFunctionWrapper(keras.losses.get("mse"), name="mse")
    assert isinstance(wrapped, keras.losses.Loss)
    assert float(wrapped(tf.zeros([2, 3]), tf.ones([2, 3]))) == pytest.approx(1.0)
    assert issubclass(_keras_private.Functional, keras.Model)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2)(inputs)
    assert _keras_private.functional_init_arguments((inputs, outputs), {})
    assert not _keras_private.functional_init_arguments((), {})
    assert isinstance(keras.Model(inputs, outputs), _keras_private.Functional)
    value = tf.constant(3.0)
    scaled = _keras_private.loss_module.scale_loss_for_distribution(value)
    restored = _keras_private.loss_module.unscale_loss_for_distribution(scaled)
    assert float(restored) == pytest.approx(3.0)  # one replica here: both are the identity
    # symbolic_build makes the compiled metrics' and the optimizer's variables.
    model = keras.Sequential([keras.layers.Dense(2)])
    model.compile("adam", loss="mse", metrics=["mae"])
    assert not model.metrics_variables[2:] and not model.built
    _keras_private.symbolic_build(model, (tf.TensorSpec([None, 3]), tf.TensorSpec([None, 2])))
    assert model.built and model.optimizer.built
    assert len(model.metrics_variables) == 4  # loss and mae: total and count each


def _imports_keras_src(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                 else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        if any(name == "keras.src" or name.startswith("keras.src.") for name in names):
            return True
    return False


def test_no_other_module_imports_keras_internals():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and _imports_keras_src(path):
                offenders.append(os.path.relpath(path, PACKAGE))
    assert offenders == ["_keras_private.py"]
