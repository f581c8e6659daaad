"""Tests of the functional core: per-sample derivatives and Newton targets."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton import _autodiff as autodiff_lib
from keras_newton.newton._autodiff import autodiff_derivatives, per_sample_loss_fn
from keras_newton.newton._closed_forms import closed_form_derivatives
from conftest import run_in_mode


def _softmax(v):
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _numpy_newton_target(gradients, matrices, outputs, damping, curvature):
    """Reference: z* = y - (M + λI)^-1 g with plain NumPy linear algebra."""
    n, m = gradients.shape
    eye = np.eye(m)
    if curvature == "hessian":
        mean = matrices.mean(0)
        steps = np.linalg.solve(mean + damping * eye, gradients.T).T
    elif curvature == "fisher":
        fisher = gradients.T @ gradients / n
        steps = np.linalg.solve(fisher + damping * eye, gradients.T).T
    else:
        steps = np.stack(
            [np.linalg.solve(matrices[i] + damping * eye, gradients[i]) for i in range(n)]
        )
    return outputs.reshape(n, m) - steps


LOSS_CASES = {
    "softmax_ce": (
        lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
        lambda y, t: (_softmax(y) - t, np.stack([np.diag(q) - np.outer(q, q) for q in _softmax(y)])),
    ),
    "mse": (
        lambda: keras.losses.MeanSquaredError(),
        lambda y, t: (2 * (y - t) / y.shape[1], np.stack([2 / y.shape[1] * np.eye(y.shape[1])] * len(y))),
    ),
    "sigmoid_bce": (
        lambda: keras.losses.BinaryCrossentropy(from_logits=True),
        lambda y, t: (
            (1 / (1 + np.exp(-y)) - t) / y.shape[1],
            np.stack([np.diag(s * (1 - s)) / y.shape[1] for s in 1 / (1 + np.exp(-y))]),
        ),
    ),
    "bce": (
        lambda: keras.losses.BinaryCrossentropy(),
        lambda y, t: (
            (y - t) / (y * (1 - y)) / y.shape[1],
            np.stack([np.diag(t_ / y_**2 + (1 - t_) / (1 - y_) ** 2) / y.shape[1] for y_, t_ in zip(y, t)]),
        ),
    ),
}


def _case_data(name, rng, n=6, m=4):
    logits = rng.normal(size=(n, m))
    if name == "softmax_ce":
        return logits, np.eye(m)[rng.integers(0, m, n)]
    if name == "mse":
        return logits, rng.normal(size=(n, m))
    if name == "sigmoid_bce":
        return logits, rng.uniform(size=(n, m)).round()
    return rng.uniform(0.1, 0.9, size=(n, m)), rng.uniform(size=(n, m)).round()


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_closed_forms_and_autodiff_match_numpy_reference(name, curvature, rng):
    make_loss, reference = LOSS_CASES[name]
    y, t = _case_data(name, rng)
    gradients, hessians = reference(y, t)
    expected = _numpy_newton_target(gradients, hessians, y, 0.05, curvature)
    for closed in (True, False):
        z = kn.newton_target(
            make_loss(), tf.constant(t, tf.float64), tf.constant(y, tf.float64),
            kn.NewtonStep(curvature, 0.05, derivatives="auto" if closed else "autodiff"),
        )
        np.testing.assert_allclose(z.numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
def test_closed_forms_equal_autodiff_in_float32(name, rng):
    make_loss, _ = LOSS_CASES[name]
    y, t = (a.astype("float32") for a in _case_data(name, rng))
    loss = make_loss()
    closed_g, closed_h = closed_form_derivatives(loss, tf.constant(t), tf.constant(y))
    auto_g, auto_h = autodiff_derivatives(
        per_sample_loss_fn(loss), tf.constant(t), tf.constant(y), "elementwise_hessian"
    )
    np.testing.assert_allclose(closed_g, auto_g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(closed_h, auto_h, rtol=1e-4, atol=1e-5)


def test_sparse_and_rank3_cross_entropy_closed_forms_match_autodiff(rng):
    logits = tf.constant(rng.normal(size=(3, 2, 4)), tf.float64)
    labels = rng.integers(0, 4, size=(3, 2))
    sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    dense = keras.losses.CategoricalCrossentropy(from_logits=True)
    for loss, target in ((sparse, labels), (dense, np.eye(4)[labels])):
        target = tf.constant(target)
        closed = closed_form_derivatives(loss, target, logits)
        auto = autodiff_derivatives(per_sample_loss_fn(loss), target, logits, "elementwise_hessian")
        np.testing.assert_allclose(closed[0], auto[0], atol=1e-12)
        np.testing.assert_allclose(closed[1], auto[1], atol=1e-12)


def test_per_sample_hessians_match_finite_differences(rng):
    """Autodiff Hessians of a non-quadratic loss against central differences."""

    def log_cosh(y_true, y_pred):
        return tf.reduce_mean(tf.math.log(tf.cosh(y_pred - y_true)) * y_pred, axis=-1)

    y = tf.constant(rng.normal(size=(3, 3)), tf.float64)
    t = tf.constant(rng.normal(size=(3, 3)), tf.float64)
    gradients, hessians = autodiff_derivatives(log_cosh, t, y, "elementwise_hessian")

    def per_sample_gradient(outputs):
        return autodiff_derivatives(log_cosh, t, outputs, "fisher")[0]

    theoretical, numerical = tf.test.compute_gradient(per_sample_gradient, [y])
    # compute_gradient's Jacobian is over all (sample, entry) pairs; keep the
    # diagonal sample blocks and check the cross-sample blocks vanish.
    jacobian = numerical[0].reshape(3, 3, 3, 3)
    for i in range(3):
        np.testing.assert_allclose(hessians[i], jacobian[i, :, i, :], atol=1e-6)
        for j in range(3):
            if j != i:
                np.testing.assert_allclose(jacobian[i, :, j, :], 0.0, atol=1e-8)
    mean_gradients, mean_hessian = autodiff_derivatives(log_cosh, t, y, "hessian")
    np.testing.assert_allclose(mean_hessian, hessians.numpy().mean(0), atol=1e-12)
    np.testing.assert_allclose(mean_gradients, gradients, atol=1e-12)


@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_gradient_of_newton_loss_is_the_damped_newton_step(curvature, rng):
    y = tf.constant(rng.normal(size=(5, 3)), tf.float32)
    t = tf.constant(np.eye(3)[rng.integers(0, 3, 5)], tf.float32)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    damping = 0.1
    newton = kn.NewtonLoss(ce, curvature=curvature, damping=damping)
    with tf.GradientTape() as tape:
        tape.watch(y)
        value = newton(t, y)
    gradient = tape.gradient(value, y).numpy()
    q = _softmax(y.numpy().astype(np.float64))
    g = q - t.numpy()
    h = np.stack([np.diag(v) - np.outer(v, v) for v in q])
    z = _numpy_newton_target(g, h, y.numpy(), damping, curvature)
    np.testing.assert_allclose(gradient, (y.numpy() - z) / 5, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_execution_modes_agree(mode, curvature, rng):
    y = tf.constant(rng.normal(size=(4, 2, 3)), tf.float32)
    t = tf.constant(rng.normal(size=(4, 2, 3)), tf.float32)

    def smooth_l1(y_true, y_pred):  # no closed form: exercises nested tapes
        return tf.reduce_mean(tf.sqrt(1.0 + tf.square(y_pred - y_true)), axis=-1)

    # Damping 0.1 keeps the rank-deficient Fisher (N=4 < m=6) well conditioned,
    # so float32 differences between compilers are not amplified.
    def target(a, b):
        return kn.newton_target(smooth_l1, a, b, curvature=curvature, damping=0.1)

    expected = target(t, y).numpy()
    got = run_in_mode(mode, target, t, y)
    assert got.shape == (4, 2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float64])
def test_low_precision_is_solved_in_float32_and_cast_back(dtype, rng):
    y = rng.normal(size=(4, 3))
    t = np.eye(3)[rng.integers(0, 3, 4)]
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    z = kn.newton_target(ce, tf.constant(t, dtype), tf.constant(y, dtype), damping=0.1)
    assert z.dtype == dtype
    reference = kn.newton_target(ce, tf.constant(t, tf.float64), tf.constant(y, tf.float64), damping=0.1)
    tolerance = {tf.float16: 2e-2, tf.bfloat16: 1e-1, tf.float64: 1e-12}[dtype]
    np.testing.assert_allclose(tf.cast(z, tf.float64), reference, atol=tolerance * 10, rtol=tolerance)


def test_large_damping_recovers_scaled_gradient_descent(rng):
    y = tf.constant(rng.normal(size=(4, 3)), tf.float64)
    t = tf.constant(rng.normal(size=(4, 3)), tf.float64)
    for curvature in kn.CURVATURES:
        z = kn.newton_target("mse", t, y, curvature=curvature, damping=1e6)
        gradient = 2 * (y - t) / 3
        np.testing.assert_allclose((y - z) * 1e6, gradient, rtol=1e-5)


def test_mse_newton_target_is_the_label_without_damping(rng):
    y = tf.constant(rng.normal(size=(4, 3)), tf.float64)
    t = tf.constant(rng.normal(size=(4, 3)), tf.float64)
    z = kn.newton_target("mse", t, y, curvature="hessian", damping=0.0)
    np.testing.assert_allclose(z, t, atol=1e-12)


class _ProtocolLoss:
    """A loss supplying its own derivatives: ℓ(y) = ½ yᵀ A y with fixed A."""

    provides_hessian = True

    def __init__(self, matrix, provides_hessian=True):
        self.matrix = tf.constant(matrix, tf.float32)
        self.provides_hessian = provides_hessian
        self.calls = 0

    def __call__(self, y_true, y_pred):
        return 0.5 * tf.einsum("ni,ij,nj->n", y_pred, self.matrix, y_pred)

    def per_sample_derivatives(self, y_true, y_pred, hessian):
        self.calls += 1
        gradients = tf.matmul(y_pred, self.matrix)
        if not hessian:
            return gradients, None
        n = tf.shape(y_pred)[0]
        return gradients, tf.broadcast_to(self.matrix, [n, 2, 2])


def test_curvature_protocol_is_used_and_checked(rng):
    matrix = np.array([[2.0, 0.5], [0.5, 1.0]])
    loss = _ProtocolLoss(matrix)
    y = rng.normal(size=(3, 2)).astype("float32")
    z = kn.newton_target(loss, tf.zeros((3, 2)), tf.constant(y), damping=0.0)
    assert loss.calls == 1
    # Exact Newton on a quadratic lands on the minimum, y = 0.
    np.testing.assert_allclose(z, np.zeros((3, 2)), atol=1e-5)
    gradient_only = _ProtocolLoss(matrix, provides_hessian=False)
    with pytest.raises(ValueError, match="fisher"):
        kn.NewtonLoss(gradient_only, curvature="hessian")
    kn.newton_target(gradient_only, tf.zeros((3, 2)), tf.constant(y), curvature="fisher")


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


def test_non_finite_inputs_give_finite_or_unchanged_targets(mode):
    y = tf.constant([[0.5, -0.5], [np.nan, 1.0], [np.inf, 0.0], [0.1, 0.2]], tf.float32)
    t = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], tf.float32)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    for curvature in kn.CURVATURES:
        z = run_in_mode(mode, lambda a, b: kn.newton_target(ce, a, b, curvature=curvature), t, y)
        finite_rows = np.isfinite(y.numpy()).all(1)
        assert np.isfinite(z[finite_rows]).all()
        # The Newton loss sends no NaN back to the outputs.
        with tf.GradientTape() as tape:
            tape.watch(y)
            value = kn.NewtonLoss(ce, curvature=curvature)(t, y)
        assert np.isfinite(tape.gradient(value, y).numpy()).all()


@pytest.mark.parametrize("indefinite", ["abs", "clip"])
def test_indefinite_and_singular_curvature_stay_finite(indefinite):
    def saddle(y_true, y_pred):  # Hessian diag(2, -2): indefinite
        return tf.square(y_pred[:, 0]) - tf.square(y_pred[:, 1])

    y = tf.constant([[1.0, 1.0], [0.5, -0.5]], tf.float64)
    for damping in (0.0, 1e-3):
        z = kn.newton_target(saddle, tf.zeros_like(y), y, kn.NewtonStep(
            damping=damping, solver=kn.newton.Solver(indefinite=indefinite)))
        assert np.isfinite(z.numpy()).all()
    z = kn.newton_target(saddle, tf.zeros_like(y), y, kn.NewtonStep(
        damping=0.0, solver=kn.newton.Solver(indefinite="abs")))
    # Saddle-free Newton: step |H|^-1 g = (y0, -y1) -> z = (0, 2 y1).
    np.testing.assert_allclose(z, np.stack([np.zeros(2), 2 * y.numpy()[:, 1]], 1), atol=1e-12)
    linear = kn.newton_target(lambda a, b: tf.reduce_sum(b, -1), tf.zeros_like(y), y, damping=0.0)
    assert np.isfinite(linear.numpy()).all()


# Shape pairs (y_true, y_pred) for each loss; Keras' own loss decides which
# are valid, and newton_target must agree with it.
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


def _smooth_l1(y_true, y_pred):  # no closed form: nested tapes
    return tf.reduce_mean(tf.sqrt(1.0 + tf.square(y_pred - y_true)), axis=-1)


NON_FINITE_LOSSES = {
    "closed_form_ce": lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
    "autodiff": lambda: _smooth_l1,
}


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("loss_name", sorted(NON_FINITE_LOSSES))
@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_a_non_finite_sample_leaves_the_other_samples_newton_steps_unchanged(
    loss_name, curvature, mode, rng
):
    """One NaN output row: the rest get exactly the z* of the batch without it."""
    y = rng.normal(size=(5, 3)).astype("float32")
    t = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1]]
    poisoned = y.copy()
    poisoned[2] = [np.nan, 0.3, -0.1]
    keep = [0, 1, 3, 4]

    def target(a, b):
        loss = NON_FINITE_LOSSES[loss_name]()
        return kn.newton_target(loss, a, b, curvature=curvature, damping=0.1)

    z = run_in_mode(mode, target, tf.constant(t), tf.constant(poisoned))
    without = run_in_mode(mode, target, tf.constant(t[keep]), tf.constant(y[keep]))
    np.testing.assert_allclose(z[keep], without, rtol=1e-5, atol=1e-6)
    # The poisoned sample takes no step.
    np.testing.assert_array_equal(z[2], poisoned[2])
    # Its neighbours did move (a plain gradient step would differ from this).
    assert np.abs(without - y[keep]).max() > 1e-2


@pytest.mark.parametrize(
    "make_step",
    [lambda samples: kn.NewtonStep("fisher", 0.1, solver="woodbury"),
     lambda samples: kn.NewtonStep(damping=0.1, estimate=kn.newton.HessianEstimate(samples)),
     lambda samples: kn.NewtonStep("elementwise_hessian", 0.1, solver="cg")],
    ids=["woodbury", "hessian_samples", "cg"],
)
def test_non_finite_labels_are_left_out_of_matrix_free_and_subsampled_curvature(make_step, rng):
    """A NaN label (finite output) gives that sample no step, the rest as without it."""
    y = rng.normal(size=(5, 3))
    t = rng.normal(size=(5, 3))
    poisoned = t.copy()
    poisoned[1, 0] = np.nan
    keep = [0, 2, 3, 4]
    # With one of the first 4 samples left out, the subsample has 3 usable ones.
    z = kn.newton_target(_smooth_l1, tf.constant(poisoned), tf.constant(y), make_step(4))
    without = kn.newton_target(_smooth_l1, tf.constant(t[keep]), tf.constant(y[keep]),
                               make_step(3))
    np.testing.assert_allclose(z.numpy()[keep], without, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(z.numpy()[1], y[1])


def test_a_sample_with_a_non_finite_hessian_alone_takes_no_step():
    """Per-sample Hessians are screened too: NaN curvature, finite gradient."""

    class NaNHessianLoss:
        def __call__(self, y_true, y_pred):
            return 0.5 * tf.reduce_sum(tf.square(y_pred), axis=-1)

        def per_sample_derivatives(self, y_true, y_pred, hessian):
            eye = tf.eye(2, batch_shape=[3], dtype=y_pred.dtype)
            nan_first = tf.constant([np.nan, 1.0, 1.0], y_pred.dtype)[:, None, None]
            return y_pred, eye * nan_first

    y = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], tf.float64)
    for curvature in ("hessian", "elementwise_hessian"):
        z = kn.newton_target(NaNHessianLoss(), tf.zeros_like(y), y, curvature=curvature, damping=0.0)
        np.testing.assert_array_equal(z[0], y[0])
        np.testing.assert_allclose(z[1:], 0.0, atol=1e-12)  # exact Newton: the minimum


_MIRRORED_SCRIPT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras_newton as kn

rng = np.random.default_rng(0)
y = rng.normal(size=(6, 3)).astype("float32")
t = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
y[1, 0] = np.nan  # replica 0 holds rows 0-2, replica 1 rows 3-5
keep = [0, 2, 3, 4, 5]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
loss = keras.losses.CategoricalCrossentropy(from_logits=True)
for options in (kn.NewtonStep("hessian", 0.1), kn.NewtonStep("fisher", 0.1),
                kn.NewtonStep("fisher", 0.1, solver="woodbury")):
    rows = lambda array: strategy.experimental_distribute_values_from_function(
        lambda context: array[3 * context.replica_id_in_sync_group:][:3])
    step = tf.function(lambda a, b: kn.newton_target(loss, a, b, options))
    z = np.concatenate(strategy.experimental_local_results(strategy.run(step, (rows(t), rows(y)))))
    single = kn.newton_target(loss, t[keep], y[keep], options).numpy()
    np.testing.assert_allclose(z[keep], single, rtol=1e-5, atol=1e-6, err_msg=str(options))
    assert np.isnan(z[1, 0]) and z[1, 1] == y[1, 1], options
print("mirrored ok")
"""


def test_left_out_samples_weigh_nothing_in_the_cross_replica_curvature():
    """MirroredStrategy (2 CPUs): all-reduced sums and usable-sample counts."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored ok" in result.stdout


CLOSED_FORM_CASES = {
    **{name: make_loss for name, (make_loss, _) in LOSS_CASES.items()},
    "sparse_ce": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
}


def _no_autodiff(*args, **kwargs):
    raise AssertionError("the closed form was expected, not nested tapes")


@pytest.mark.parametrize("name", sorted(CLOSED_FORM_CASES))
@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_closed_form_targets_agree_across_execution_modes(name, curvature, mode, rng, monkeypatch):
    if name == "sparse_ce":
        logits, one_hot = _case_data("softmax_ce", rng)
        y, t = logits, one_hot.argmax(-1)
    else:
        y, t = _case_data(name, rng)
    y, t = tf.constant(y, tf.float32), tf.constant(t, tf.int32 if name == "sparse_ce" else tf.float32)
    # Every mode must take the closed-form path, not fall back to autodiff.
    monkeypatch.setattr(autodiff_lib, "autodiff_derivatives", _no_autodiff)

    def target(a, b):
        return kn.newton_target(CLOSED_FORM_CASES[name](), a, b, curvature=curvature, damping=0.1)

    expected = target(t, y).numpy()
    got = run_in_mode(mode, target, t, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected - y.numpy()).max() > 1e-3  # a real step was taken


class _LogSumExpProtocolLoss:
    """Softmax cross-entropy through the curvature protocol (no closed form)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, y_true, y_pred):
        return tf.reduce_logsumexp(y_pred, axis=-1) - tf.reduce_sum(y_true * y_pred, axis=-1)

    def per_sample_derivatives(self, y_true, y_pred, hessian):
        self.calls += 1
        q = tf.nn.softmax(y_pred)
        hessians = tf.linalg.diag(q) - q[:, :, None] * q[:, None, :] if hessian else None
        return q - y_true, hessians


@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_curvature_protocol_targets_agree_across_execution_modes(curvature, mode, rng, monkeypatch):
    y, t = _case_data("softmax_ce", rng)
    gradients, hessians = LOSS_CASES["softmax_ce"][1](y, t)
    expected = _numpy_newton_target(gradients, hessians, y, 0.1, curvature)
    monkeypatch.setattr(autodiff_lib, "autodiff_derivatives", _no_autodiff)
    loss = _LogSumExpProtocolLoss()
    got = run_in_mode(
        mode, lambda a, b: kn.newton_target(loss, a, b, curvature=curvature, damping=0.1),
        tf.constant(t, tf.float32), tf.constant(y, tf.float32),
    )
    assert loss.calls == 1
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
