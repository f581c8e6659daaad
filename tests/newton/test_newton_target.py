"""Newton targets computed right: per-sample derivatives and eq. (3a) against NumPy.

Closed forms, autodiff and the curvature protocol against NumPy references
and finite differences; the gradient of the Newton loss is the damped Newton
step; indefinite curvature; agreement across execution modes. Arguments and
shapes are tested in ``test_target_arguments.py``, non-finite samples in
``test_target_non_finite.py``.
"""

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
