"""Adaptive (Levenberg-Marquardt) damping: the rule, its state, and its plumbing."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton.adaptive_damping import AdaptiveDamping, next_ratio
from keras_newton.newton._curvature_scale import curvature_scale
from keras_newton.newton._estimators import (
    DenseCurvature,
    EigenCurvature,
    FisherFactor,
    HessianProducts,
)
from keras_newton.newton._loss_decrease import actual_reduction, paired_values, predicted_reduction


def log_cosh(y_true, y_pred):
    """Saturating loss: its Newton step overshoots far from the target."""
    return tf.reduce_sum(tf.math.log(tf.cosh(y_pred - y_true)), axis=-1)


def quadratic(y_true, y_pred):
    """½ (y - t)ᵀ A (y - t) with a fixed SPD A: the exact Hessian is A."""
    a = tf.constant([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]], y_pred.dtype)
    d = y_pred - y_true
    return 0.5 * tf.reduce_sum(d * tf.linalg.matvec(a, d), axis=-1)


# --- the rule ------------------------------------------------------------------

def test_string_shortcut_and_config_round_trip():
    step = kn.NewtonStep("hessian", damping="adaptive")
    assert isinstance(step.damping, AdaptiveDamping)
    assert kn.NewtonStep.from_config(step.get_config()) == step
    rule = AdaptiveDamping(initial=0.1, factor=2.0, maximum=10.0)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(rule))
    assert again == rule and again.get_config()["factor"] == 2.0


@pytest.mark.parametrize("kwargs, match", [
    ({"factor": 1.0}, "factor"), ({"low": 0.8, "high": 0.5}, "low < high"),
    ({"initial": 1e-9}, "minimum <= initial"), ({"minimum": -1.0}, "minimum"),
    ({"initial": float("nan")}, "initial"),
])
def test_bad_constants_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AdaptiveDamping(**kwargs)


def test_unknown_damping_string_is_an_error():
    with pytest.raises(TypeError, match="damping"):
        kn.NewtonLoss("mse", damping="adaptiv")


def test_adaptive_has_no_fixed_value():
    with pytest.raises(ValueError, match="no fixed"):
        AdaptiveDamping().value()


@pytest.mark.parametrize("actual, predicted, factor", [
    (1.0, 1.0, 1 / 1.5),            # ρ = 1 > ¾: trust the model more
    (0.5, 1.0, 1.0),                # ¼ <= ρ <= ¾: keep
    (0.1, 1.0, 1.5),                # ρ < ¼
    (-1.0, 1.0, 1.5),               # the loss went up
    (1.0, 0.0, 1.5),                # no predicted reduction
    (1.0, -1.0, 1.5),               # negative prediction
    (float("nan"), 1.0, 1.5),       # non-finite actual
    (1.0, float("inf"), 1.5),       # non-finite prediction
])
def test_next_ratio(actual, predicted, factor):
    rule = AdaptiveDamping()
    got = float(next_ratio(1e-2, actual, predicted, rule))
    np.testing.assert_allclose(got, 1e-2 * factor, rtol=1e-6)


def test_next_ratio_is_clamped():
    rule = AdaptiveDamping(initial=1.0, minimum=0.5, maximum=2.0)
    assert float(next_ratio(0.6, 1.0, 1.0, rule)) == 0.5
    assert float(next_ratio(1.9, -1.0, 1.0, rule)) == 2.0


# --- κ and the reductions, against independent NumPy --------------------------

def test_curvature_scale_of_every_form(rng):
    m, n = 5, 7
    a = rng.normal(size=(m, m))
    matrix = a + a.T  # indefinite
    expected = np.sqrt(np.mean(np.linalg.eigvalsh(matrix) ** 2))
    got = curvature_scale(DenseCurvature(tf.constant(matrix), True), None)
    np.testing.assert_allclose(float(got), expected, rtol=1e-10)

    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    got = curvature_scale(EigenCurvature(tf.constant(eigenvalues[-2:]),
                                         tf.constant(eigenvectors[:, -2:]), True), None)
    np.testing.assert_allclose(float(got), np.sqrt(np.sum(eigenvalues[-2:] ** 2) / m))

    per_sample = np.stack([b + b.T for b in rng.normal(size=(n, m, m))])
    usable = np.array([True] * (n - 1) + [False])[:, None]
    expected = np.sqrt(np.mean([np.sum(h ** 2) / m for h in per_sample[:-1]]))
    got = curvature_scale(DenseCurvature(tf.constant(per_sample), True), None,
                          tf.constant(usable))
    np.testing.assert_allclose(float(got), expected, rtol=1e-10)

    gradients = rng.normal(size=(n, m))
    fisher = gradients.T @ gradients / n
    expected = np.sqrt(np.mean(np.linalg.eigvalsh(fisher) ** 2))
    got = curvature_scale(FisherFactor(tf.constant(gradients), tf.constant(1.0, tf.float64)),
                          None)
    np.testing.assert_allclose(float(got), expected, rtol=1e-10)


def test_curvature_scale_of_products_is_unbiased(rng):
    """Hutchinson: mean ‖H v‖² over Rademacher v/√m is ‖H‖_F²/m in expectation."""
    m, n = 6, 4000
    a = rng.normal(size=(m, m))
    h = tf.constant(a + a.T, tf.float32)
    products = HessianProducts(lambda v: tf.linalg.matmul(v, h))
    got = curvature_scale(products, tf.zeros([n, m]))
    expected = np.sqrt(np.mean(np.linalg.eigvalsh(a + a.T) ** 2))
    np.testing.assert_allclose(float(got), expected, rtol=0.05)


def test_zero_curvature_has_unit_scale():
    got = curvature_scale(DenseCurvature(tf.zeros([3, 3]), True), None)
    assert float(got) == 1.0


def test_predicted_reduction_equals_the_quadratic_model(rng):
    m, n, damping = 4, 6, 0.3
    a = rng.normal(size=(m, m))
    curvature = a @ a.T
    g = rng.normal(size=(n, m))
    s = np.linalg.solve(curvature + damping * np.eye(m), g.T).T
    d = -s
    model = -(np.sum(g * d, axis=1) + 0.5 * np.einsum("bi,ij,bj->b", d, curvature, d))
    stepped = np.array([True, True, False, True, True, True])[:, None]
    got = predicted_reduction(tf.constant(g), tf.constant(s), damping, tf.constant(stepped))
    np.testing.assert_allclose(float(got), model[stepped[:, 0]].sum(), rtol=1e-10)


def test_actual_reduction(rng):
    y = rng.normal(size=(5, 3))
    z = y * 0.5
    stepped = np.array([True, False, True, True, True])[:, None]
    got = actual_reduction(log_cosh, tf.zeros([5, 3], tf.float64), tf.constant(y),
                           tf.constant(z), tf.constant(stepped))
    values = lambda v: np.sum(np.log(np.cosh(v)), axis=1)
    np.testing.assert_allclose(float(got), (values(y) - values(z))[stepped[:, 0]].sum())


def test_stochastic_loss_is_compared_under_one_noise_draw(rng):
    loss = kn.losses.SmoothedLoss("mse", algorithm=None, sigma=0.5, num_samples=3, seed=3)
    y = tf.constant(rng.normal(size=(4, 3)), tf.float32)
    t = tf.zeros_like(y)
    first, second = paired_values(loss, t, y, y)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    # Two plain calls draw different noise.
    assert not np.array_equal(loss(t, y).numpy(), loss(t, y).numpy())


# --- the state through NewtonLoss ---------------------------------------------

def _repeat(mode, loss, y_true, y_pred, steps):
    """Runs ``steps`` calls of ``loss`` (one traced step in function / XLA modes)."""
    def one_step():
        loss(y_true, y_pred)
        return loss.damping_state.ratio.read_value()

    step = one_step if mode == "eager" else tf.function(one_step, jit_compile=mode == "xla")
    for _ in range(steps):
        step()
    state = loss.damping_state
    return (float(state.ratio.numpy()), float(state.damping.numpy()),
            float(state.reduction_ratio.numpy()))


def test_quadratic_loss_drives_lambda_to_its_bound_and_z_to_the_minimizer(mode, rng):
    rule = AdaptiveDamping(initial=1e-4, factor=4.0, minimum=1e-6)
    loss = kn.NewtonLoss(quadratic, kn.NewtonStep("hessian", damping=rule))
    y_pred = tf.constant(rng.normal(size=(8, 3)), tf.float32)
    y_true = tf.constant(rng.normal(size=(8, 3)), tf.float32)
    ratio, damping, rho = _repeat(mode, loss, y_true, y_pred, 6)
    # ρ = 1 for an exact quadratic model: λ falls by the factor each step to the bound.
    np.testing.assert_allclose(rho, 1.0, atol=1e-3)
    assert ratio == pytest.approx(1e-6)
    loss.damping_state.adapting = False
    target = kn.newton.newton_step_target(quadratic, y_true, y_pred, loss.step, None,
                                          loss.damping_state)
    assert float(loss.damping_state.ratio.numpy()) == ratio  # not adapted
    np.testing.assert_allclose(target.numpy(), y_true.numpy(), atol=2e-5)


def test_overshooting_loss_raises_lambda_until_the_model_is_trusted(mode, rng):
    loss = kn.NewtonLoss(log_cosh, kn.NewtonStep(
        "hessian", damping=AdaptiveDamping(initial=1e-6, factor=4.0, minimum=1e-6)))
    y_pred = tf.constant(3.0 + rng.normal(size=(16, 2)), tf.float32)
    y_true = tf.zeros_like(y_pred)
    ratio, _, rho = _repeat(mode, loss, y_true, y_pred, 1)
    assert rho < 0  # the undamped Newton step from the flat tail overshoots
    ratio, _, rho = _repeat(mode, loss, y_true, y_pred, 14)
    assert ratio > 1e-3
    assert rho >= 0.25


def test_upper_bound_holds(rng):
    loss = kn.NewtonLoss(log_cosh, kn.NewtonStep(
        "hessian", damping=AdaptiveDamping(initial=1e-3, factor=4.0, minimum=1e-6,
                                           maximum=1e-2)))
    y_pred = tf.constant(5.0 + rng.normal(size=(8, 2)), tf.float32)
    for _ in range(6):
        loss(tf.zeros_like(y_pred), y_pred)
    assert float(loss.damping_state.ratio.numpy()) == pytest.approx(1e-2)


@pytest.mark.parametrize("curvature", ["hessian", "fisher", "elementwise_hessian"])
def test_modes_agree_on_the_trajectory(curvature, rng):
    y_pred = tf.constant(2.0 * rng.normal(size=(12, 3)), tf.float32)
    y_true = tf.zeros_like(y_pred)
    got = {}
    for mode in ("eager", "function", "xla"):
        loss = kn.NewtonLoss(log_cosh, curvature=curvature, damping="adaptive")
        got[mode] = _repeat(mode, loss, y_true, y_pred, 6)
    for mode in ("function", "xla"):
        np.testing.assert_allclose(got[mode], got["eager"], rtol=1e-4)


@pytest.mark.parametrize("estimate, solver", [
    (kn.newton.HessianEstimate(rank=3), "auto"),
    (None, kn.newton.Solver("cg")),
])
def test_estimated_and_matrix_free_paths_adapt(estimate, solver, rng):
    curvature = "hessian" if estimate is not None else "elementwise_hessian"
    loss = kn.NewtonLoss(log_cosh, kn.NewtonStep(curvature, damping="adaptive",
                                                 estimate=estimate, solver=solver))
    y_pred = tf.constant(2.0 * rng.normal(size=(8, 4)), tf.float32)
    for _ in range(3):
        out = loss(tf.zeros_like(y_pred), y_pred)
    assert np.isfinite(out.numpy())
    assert np.isfinite(loss.damping_state.reduction_ratio.numpy())
    assert loss.damping_state.ratio.numpy() != AdaptiveDamping().initial


def test_woodbury_fisher_adapts(rng):
    loss = kn.NewtonLoss(log_cosh, kn.NewtonStep("fisher", damping="adaptive",
                                                 solver="woodbury"))
    y_pred = tf.constant(rng.normal(size=(4, 300)), tf.float32)
    dense = kn.NewtonLoss(log_cosh, kn.NewtonStep("fisher", damping="adaptive",
                                                  solver="dense"))
    for _ in range(3):
        a = loss(tf.zeros_like(y_pred), y_pred)
        b = dense(tf.zeros_like(y_pred), y_pred)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3)
    np.testing.assert_allclose(loss.damping_state.ratio.numpy(),
                               dense.damping_state.ratio.numpy(), rtol=1e-6)


def test_non_finite_batches_raise_lambda_and_keep_finite_rows(rng):
    loss = kn.NewtonLoss(log_cosh, damping="adaptive")
    y = 2.0 * rng.normal(size=(6, 3)).astype("float32")
    y[2, 1] = np.nan
    start = float(loss.damping_state.ratio.numpy())
    values = loss(tf.zeros([6, 3]), tf.constant(y), sample_weight=None)
    assert np.isfinite(values.numpy())
    # A NaN row is left out; the others still decide ρ.
    assert np.isfinite(loss.damping_state.reduction_ratio.numpy())
    everything_nan = tf.fill([4, 3], np.nan)
    loss(tf.zeros([4, 3]), everything_nan)
    after = float(loss.damping_state.ratio.numpy())
    assert np.isnan(loss.damping_state.reduction_ratio.numpy())
    assert after > float(next_ratio(start, 1.0, 1.0, AdaptiveDamping())) or after > start


def test_newton_target_without_state_uses_the_initial_ratio(rng):
    y = tf.constant(rng.normal(size=(6, 3)), tf.float32)
    t = tf.zeros_like(y)
    adaptive = kn.newton_target(quadratic, t, y, damping=AdaptiveDamping(initial=0.5))
    scale = np.sqrt(np.mean(np.linalg.eigvalsh(
        np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]])) ** 2))
    fixed = kn.newton_target(quadratic, t, y, damping=0.5 * scale)
    np.testing.assert_allclose(adaptive.numpy(), fixed.numpy(), rtol=1e-5)


# --- NewtonLossModel: logs, evaluation, saving, resuming ----------------------

def _data(rng, n=64):
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, :3] * 2.0 + 3.0).astype("float32")
    return x, y


def _model(jit_compile=False, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3)(inputs)
    model = kn.NewtonLossModel(inputs, outputs, damping="adaptive")
    model.compile(keras.optimizers.SGD(0.1), loss=keras.losses.LogCosh(),
                  jit_compile=jit_compile)
    return model


def _ratio(model):
    return float(model._newton_wrappers[0].damping_state.ratio.numpy())


@pytest.mark.parametrize("jit_compile", [False, True])
def test_model_logs_lambda_and_evaluation_does_not_adapt(jit_compile, rng):
    x, y = _data(rng)
    model = _model(jit_compile)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert len(history.history["damping"]) == 2
    assert all(np.isfinite(history.history["damping"]))
    ratio = _ratio(model)
    assert ratio != AdaptiveDamping().initial
    model.evaluate(x, y, verbose=0)
    assert _ratio(model) == ratio


def test_state_survives_keras_files_and_saved_weights(tmp_path, rng):
    x, y = _data(rng)
    model = _model()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    assert _ratio(keras.models.load_model(path)) == _ratio(model)
    weights = os.path.join(tmp_path, "model.weights.h5")
    model.save_weights(weights)
    fresh = _model(seed=1)
    fresh.load_weights(weights)
    assert _ratio(fresh) == _ratio(model)


def test_newton_loss_state_is_saved_with_the_compiled_model(tmp_path, rng):
    x, y = _data(rng)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    loss = kn.NewtonLoss(keras.losses.LogCosh(), damping="adaptive")
    model.compile("sgd", loss=loss)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "compiled.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.loss.damping_state.ratio.numpy(),
                               loss.damping_state.ratio.numpy())


def test_resumed_run_equals_uninterrupted_run(tmp_path, rng):
    x, y = _data(rng)
    backup = os.path.join(tmp_path, "backup")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    straight = _model()
    straight.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)
    first = _model()
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), Interrupt()])
    resumed = _model(seed=5)  # a fresh process would start from other weights
    resumed.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
                callbacks=[keras.callbacks.BackupAndRestore(backup)])
    assert _ratio(resumed) == pytest.approx(_ratio(straight), rel=1e-6)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nan_rows_never_reach_the_weights(rng):
    x, y = _data(rng)
    x[::7] = np.nan
    y[3::11] = np.inf
    model = _model(jit_compile=True)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert np.isfinite(_ratio(model))
