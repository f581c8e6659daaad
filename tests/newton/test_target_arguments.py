"""Arguments of ``newton_target``: bad options and inputs, shapes as Keras accepts them, dampings."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from conftest import run_in_mode


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(curvature="newton"), ValueError, "curvature"),
        (dict(damping=-1.0), ValueError, "damping"),
        (dict(damping=float("nan")), ValueError, "damping"),
        (dict(damping="big"), TypeError, "damping"),  # strings: only "adaptive"
    ],
)
def test_bad_options_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        kn.NewtonLoss("mse", **kwargs)
    with pytest.raises(error, match=match):
        kn.newton_target("mse", tf.zeros((2, 2)), tf.zeros((2, 2)), **kwargs)
    with pytest.raises(error, match=match):
        kn.NewtonStep(**kwargs)


def test_bad_indefinite_raises():
    with pytest.raises(ValueError, match="indefinite"):
        kn.newton.Solver(indefinite="flip")


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="y_pred"):
        kn.newton_target("mse", tf.zeros([3]), tf.zeros([3]))
    with pytest.raises(TypeError, match="y_pred"):
        kn.newton_target("mse", tf.zeros([3, 2], tf.int32), tf.zeros([3, 2], tf.int32))
    with pytest.raises(ValueError, match="batch size"):
        kn.newton_target("mse", tf.zeros([4, 2]), tf.zeros([3, 2]))
    with pytest.raises(TypeError, match="loss"):
        kn.NewtonLoss(3)
    with pytest.raises(ValueError, match="scalar"):
        kn.newton_target(lambda a, b: tf.reduce_sum(b), tf.zeros([3, 2]), tf.zeros([3, 2]))

SHAPE_CASES = {
    "mse": (keras.losses.MeanSquaredError, [
        ((4, 3), (4, 3)), ((4, 1), (4, 3)), ((4, 3), (4, 1)), ((4,), (4, 1)),
        ((4, 3), (4, 4)), ((4,), (4, 3)), ((4, 3), (4, 2, 3)),
    ]),
    "softmax_ce": (lambda: keras.losses.CategoricalCrossentropy(from_logits=True), [
        ((4, 3), (4, 3)), ((4, 3), (4, 4)), ((4, 1), (4, 4)), ((4, 4), (4, 1, 4)),
    ]),
    "sigmoid_bce": (lambda: keras.losses.BinaryCrossentropy(from_logits=True), [
        ((4, 3), (4, 3)), ((4,), (4, 1)), ((4, 3), (4, 4)), ((4, 1), (4, 4)),
    ]),
    "bce": (keras.losses.BinaryCrossentropy, [
        ((4, 3), (4, 3)), ((4,), (4, 1)), ((4, 1), (4, 4)),
    ]),
    "sparse_ce": (lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True), [
        ((4,), (4, 5)), ((4, 1), (4, 5)), ((4, 3), (4, 3, 5)), ((4, 3, 1), (4, 3, 5)),
        ((4, 2), (4, 5)), ((4, 2), (4, 3, 5)),
    ]),
}
SHAPE_PARAMS = [
    pytest.param(name, true_shape, pred_shape, id=f"{name}-{true_shape}-{pred_shape}")
    for name, (_, pairs) in sorted(SHAPE_CASES.items())
    for true_shape, pred_shape in pairs
]


def _shape_case_tensors(name, true_shape, pred_shape, rng):
    if name == "sparse_ce":
        y_true = tf.constant(rng.integers(0, pred_shape[-1], size=true_shape), tf.int32)
    else:
        y_true = tf.constant(rng.uniform(0.1, 0.9, size=true_shape), tf.float32)
    return y_true, tf.constant(rng.uniform(0.1, 0.9, size=pred_shape), tf.float32)


def _keras_accepts(loss, y_true, y_pred) -> bool:
    try:
        loss(y_true, y_pred)
    except (ValueError, tf.errors.InvalidArgumentError):
        return False
    return True


@pytest.mark.parametrize("name, true_shape, pred_shape", SHAPE_PARAMS)
def test_shapes_are_accepted_exactly_when_keras_accepts_them(
    name, true_shape, pred_shape, rng
):
    make_loss = SHAPE_CASES[name][0]
    y_true, y_pred = _shape_case_tensors(name, true_shape, pred_shape, rng)
    accepted = _keras_accepts(make_loss(), y_true, y_pred)
    for mode in ("eager", "function"):
        for closed in (True, False):
            def target(a, b):
                return kn.newton_target(make_loss(), a, b, kn.NewtonStep(
                    damping=0.1, derivatives="auto" if closed else "autodiff"))

            if accepted:
                z = run_in_mode(mode, target, y_true, y_pred)
                assert z.shape == pred_shape and np.isfinite(z).all()
                # Closed forms (where they apply) and autodiff agree.
                np.testing.assert_allclose(z, target(y_true, y_pred), rtol=1e-5, atol=1e-6)
                continue
            shapes = rf"y_true of shape \({true_shape[0]},.*\) and y_pred of shape \({pred_shape[0]},"
            with pytest.raises(ValueError, match=shapes) as error:
                run_in_mode(mode, target, y_true, y_pred)
            assert make_loss().name in str(error.value)


def test_mse_targets_wider_than_outputs_follow_keras_broadcasting(rng):
    """y_true [N, 3] against y_pred [N, 1]: Keras averages over the 3 targets."""
    y = rng.normal(size=(4, 1))
    t = rng.normal(size=(4, 3))
    z = kn.newton_target("mse", tf.constant(t), tf.constant(y), damping=0.5)
    # ℓ = mean_j (y - t_j)²: g = 2 (y - mean_j t_j), H = 2.
    expected = y - 2 * (y - t.mean(1, keepdims=True)) / (2 + 0.5)
    np.testing.assert_allclose(z, expected, rtol=1e-12)


def test_shape_errors_of_callables_and_protocol_losses_name_both_inputs(mode):
    def own_loss(y_true, y_pred):
        return tf.reduce_sum(tf.square(y_pred - y_true), axis=-1)

    class ProtocolLoss:
        def __call__(self, y_true, y_pred):
            return own_loss(y_true, y_pred)

        def per_sample_derivatives(self, y_true, y_pred, hessian):
            gradients = 2.0 * (y_pred - y_true)
            return gradients, tf.eye(3, batch_shape=[4]) * 2.0

    for loss in (own_loss, ProtocolLoss()):
        with pytest.raises(ValueError, match=r"y_true of shape \(4, 2\) and y_pred of shape \(4, 3\)"):
            run_in_mode(mode, lambda a, b: kn.newton_target(loss, a, b), tf.zeros([4, 2]), tf.zeros([4, 3]))


def test_errors_unrelated_to_shapes_pass_through_unchanged():
    def broken(y_true, y_pred):
        raise ValueError("temperature must be positive")

    with pytest.raises(ValueError, match="^temperature must be positive$"):
        kn.newton_target(broken, tf.zeros([2, 2]), tf.zeros([2, 2]))


def test_targets_with_their_own_structure_still_work(rng):
    """A callable may take y_true as a dict; only y_pred needs [batch, ...]."""

    def weighted_mse(y_true, y_pred):
        return tf.reduce_mean(y_true["weight"] * tf.square(y_pred - y_true["value"]), axis=-1)

    y = rng.normal(size=(4, 2))
    targets = {"value": tf.constant(rng.normal(size=(4, 2))), "weight": tf.constant([[2.0]] * 4, tf.float64)}
    z = kn.newton_target(weighted_mse, targets, tf.constant(y), damping=0.0)
    np.testing.assert_allclose(z, targets["value"], atol=1e-12)


@pytest.mark.parametrize("value", [np.float32(0.25), np.float64(0.1), np.float16(0.5), np.int64(2), 3])
def test_damping_accepts_python_and_numpy_real_numbers(value, rng):
    loss = kn.NewtonLoss("mse", damping=value)
    lam = loss.step.damping.value()
    assert type(lam) is float and lam == float(value)
    json.dumps(loss.get_config())  # an np.float32 would not serialize
    y = tf.constant(rng.normal(size=(3, 2)))
    t = tf.constant(rng.normal(size=(3, 2)))
    np.testing.assert_allclose(
        kn.newton_target("mse", t, y, damping=value),
        kn.newton_target("mse", t, y, damping=float(value)),
        rtol=1e-15,
    )


@pytest.mark.parametrize(
    "value, error",
    [
        (True, TypeError), (np.bool_(True), TypeError), ("0.1", TypeError),
        (None, TypeError), (tf.constant(0.1), TypeError), (np.array([0.1]), TypeError),
        (np.float32("nan"), ValueError), (np.inf, ValueError), (np.float32(-0.5), ValueError),
        (np.int64(-1), ValueError),
    ],
)
def test_damping_rejects_non_numbers_and_bad_values(value, error):
    with pytest.raises(error, match="damping"):
        kn.NewtonLoss("mse", damping=value)
    with pytest.raises(error, match="damping"):
        kn.newton_target("mse", tf.zeros([2, 2]), tf.zeros([2, 2]), damping=value)


def test_tensor_damping_error_says_a_python_number_is_needed():
    with pytest.raises(TypeError, match="Python or NumPy real number"):
        kn.NewtonLoss("mse", damping=tf.constant(0.1))
