"""Python lists and NumPy arrays work as targets and outputs; ragged/sparse tensors get a named TypeError.

(A ``keras.Model`` itself rejects a Python-list ``y`` for a single output in
``fit``/``train_on_batch``, "y_true and y_pred have different structures",
so :class:`keras_newton.NewtonLossModel` is covered by the NumPy tests of
its own test file.)
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from conftest import run_in_mode

CASES = [
    ("mse", [[0.0, 1.0, 0.0], [1.0, 0.0, 0.5]]),
    (keras.losses.CategoricalCrossentropy(from_logits=True), [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    (keras.losses.SparseCategoricalCrossentropy(from_logits=True), [1, 0]),
    (lambda t, y: tf.reduce_sum(tf.cosh(y - t), -1), [[0.0, 1.0, 0.0], [1.0, 0.0, 0.5]]),
]
Y_PRED = [[0.5, 0.5, 0.0], [0.2, -0.3, 0.1]]


@pytest.mark.parametrize("loss, y_true", CASES, ids=["mse", "cce", "sparse_cce", "autodiff"])
@pytest.mark.parametrize("kind", ["list", "numpy"])
def test_newton_target_takes_lists_and_arrays(mode, loss, y_true, kind):
    # The reproducer: newton_target("mse", [[0., 1., 0.]], tf.constant(...)) raised
    # AttributeError: 'list' object has no attribute 'shape'.
    expected = kn.newton_target(loss, tf.constant(y_true), tf.constant(Y_PRED)).numpy()
    convert = list if kind == "list" else np.asarray
    true_value = y_true if kind == "list" else np.asarray(y_true)
    y_pred = Y_PRED if kind == "list" else np.asarray(Y_PRED, np.float32)
    got_true_only = run_in_mode(mode, lambda p: kn.newton_target(loss, true_value, p),
                                tf.constant(Y_PRED))
    # The same computation from tensors, in the same mode (XLA rounds differently).
    in_mode = run_in_mode(mode, lambda t, p: kn.newton_target(loss, t, p),
                          tf.constant(y_true), tf.constant(Y_PRED))
    got_both = kn.newton_target(loss, true_value, convert(y_pred))
    np.testing.assert_allclose(got_true_only, in_mode, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got_both.numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss, y_true", CASES, ids=["mse", "cce", "sparse_cce", "autodiff"])
def test_newton_loss_takes_lists(loss, y_true):
    newton_loss = kn.NewtonLoss(loss, damping=0.1)
    expected = newton_loss(tf.constant(y_true), tf.constant(Y_PRED)).numpy()
    assert np.isfinite(expected)
    np.testing.assert_allclose(newton_loss(y_true, Y_PRED).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(newton_loss(np.asarray(y_true), np.asarray(Y_PRED)).numpy(),
                               expected, rtol=1e-6)


RAGGED = tf.ragged.constant([[0.0, 1.0], [1.0]])
SPARSE = tf.sparse.from_dense(tf.constant([[0.0, 1.0], [1.0, 0.0]]))


@pytest.mark.parametrize("value, kind", [(RAGGED, "RaggedTensor"), (SPARSE, "SparseTensor")],
                         ids=["ragged", "sparse"])
@pytest.mark.parametrize("argument", ["y_true", "y_pred"])
def test_ragged_and_sparse_get_a_type_error_naming_the_argument(value, kind, argument):
    dense = tf.zeros([2, 2])
    args = (value, dense) if argument == "y_true" else (dense, value)
    with pytest.raises(TypeError, match=rf"^{argument} is a tf\.{kind}"):
        kn.newton_target("mse", *args)
    with pytest.raises(TypeError, match=rf"^{argument} is a tf\.{kind}"):
        kn.NewtonLoss("mse")(*args)
