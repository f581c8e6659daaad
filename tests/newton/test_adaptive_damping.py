"""Adaptive (Levenberg-Marquardt) damping: the rule, its state, and its plumbing."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from conftest import run_in_mode
from keras_newton.newton.adaptive_damping import (
    AdaptiveDamping,
    clip_to_radius,
    next_radius,
    next_ratio,
    trust_region_damping,
)
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
    # Outside float32's normal range: would be stored as inf, 0 or a denormal.
    ({"initial": 1e39, "maximum": 1e40}, "initial"), ({"maximum": 1e40}, "maximum"),
    ({"minimum": 1e-50}, "minimum"), ({"radius": 1e-40}, "radius"),
    ({"min_radius": 1e-45}, "min_radius"), ({"max_radius": 1e39}, "max_radius"),
    ({"initial": 2e6}, "minimum <= initial <= maximum"),
    ({"radius": 1e7}, "min_radius <= radius <= max_radius"),
    ({"min_radius": 2.0}, "min_radius <= radius"),
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


def test_zero_or_non_finite_curvature_has_zero_scale():
    assert float(curvature_scale(DenseCurvature(tf.zeros([3, 3]), True), None)) == 0.0
    inf = tf.fill([3, 3], np.float32(np.inf))
    assert float(curvature_scale(DenseCurvature(inf, True), None)) == 0.0


def test_damping_is_floored_by_the_gradient_over_the_radius(rng):
    g = rng.normal(size=(5, 3)).astype("float32")
    usable = np.array([[True], [True], [False], [True], [True]])
    g[2] *= 100.0  # an unusable row does not set the floor
    largest = np.linalg.norm(g[usable[:, 0]], axis=1).max()
    for scale, want_bound in [(1e3, False), (1e-3, True), (0.0, True), (np.inf, True)]:
        damping, bound = trust_region_damping(0.1, 2.0, tf.constant(scale, tf.float32),
                                              tf.constant(g), tf.constant(usable))
        finite = scale if np.isfinite(scale) else 0.0
        np.testing.assert_allclose(float(damping), max(0.1 * finite, largest / 2.0), rtol=1e-6)
        assert bool(bound) == want_bound
    # Monotone: a smaller κ never gives a smaller λ... never a larger step.
    scales = np.geomspace(1e-30, 1e2, 30)
    values = [float(trust_region_damping(0.1, 2.0, tf.constant(k, tf.float32),
                                         tf.constant(g), tf.constant(usable))[0])
              for k in scales]
    assert np.all(np.diff(values) >= 0)
    # No gradient at all: every step is 0; λ = r stays positive (Woodbury divides by it).
    damping, bound = trust_region_damping(0.1, 2.0, tf.constant(0.0), tf.zeros([4, 3]))
    assert float(damping) == pytest.approx(0.1) and not bool(bound)


def test_clip_to_radius():
    steps = tf.constant([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [np.nan, 1.0]])
    clipped, shrink = clip_to_radius(steps, 1.0)
    np.testing.assert_allclose(clipped.numpy()[:3], [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]],
                               rtol=1e-6)
    np.testing.assert_allclose(shrink.numpy()[:, 0], [0.2, 1.0, 1.0, 1.0], rtol=1e-6)


def test_predicted_reduction_of_a_shortened_step_is_the_quadratic_model(rng):
    # Independent check: the model gᵀt - ½ tᵀ M t at t = c (M + λI)^{-1} g.
    a = rng.normal(size=(3, 3))
    m, lam = a @ a.T, 0.3
    g = rng.normal(size=(4, 3))
    s = np.linalg.solve(m + lam * np.eye(3), g.T).T
    c = np.array([1.0, 0.5, 0.1, 0.9])
    t = c[:, None] * s
    want = np.sum(np.sum(g * t, axis=1) - 0.5 * np.einsum("ni,ij,nj->n", t, m, t))
    got = predicted_reduction(tf.constant(g), tf.constant(t), lam, tf.ones([4, 1], tf.bool),
                              tf.constant(c[:, None]))
    np.testing.assert_allclose(float(got), want, rtol=1e-10)


def test_next_radius():
    rule = AdaptiveDamping(radius=1.0, factor=2.0, min_radius=0.25, max_radius=4.0)
    assert float(next_radius(1.0, 1.0, 1.0, rule)) == 2.0   # ρ = 1: grow
    assert float(next_radius(1.0, -1.0, 1.0, rule)) == 0.5  # overshoot: shrink
    assert float(next_radius(1.0, 0.5, 1.0, rule)) == 1.0   # in between: keep
    assert float(next_radius(1.0, np.nan, 1.0, rule)) == 0.5  # untrusted: shrink
    assert float(next_radius(4.0, 1.0, 1.0, rule)) == 4.0   # clamped
    assert float(next_radius(0.25, -1.0, 1.0, rule)) == 0.25


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
    rule = AdaptiveDamping(initial=1e-4, factor=4.0, minimum=1e-6, radius=1e9, max_radius=1e9)
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
        "hessian", damping=AdaptiveDamping(initial=1e-6, factor=4.0, minimum=1e-6,
                                           radius=1e9, max_radius=1e9)))
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
                                           maximum=1e-2, radius=1e9, max_radius=1e9)))
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
    state, rule = loss.damping_state, AdaptiveDamping()
    assert (state.ratio.numpy() != np.float32(rule.initial)
            or state.radius.numpy() != np.float32(rule.radius))


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
    adaptive = kn.newton_target(quadratic, t, y,
                                damping=AdaptiveDamping(initial=0.5, radius=1e9, max_radius=1e9))
    scale = np.sqrt(np.mean(np.linalg.eigvalsh(
        np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 3.0]])) ** 2))
    fixed = kn.newton_target(quadratic, t, y, damping=0.5 * scale)
    np.testing.assert_allclose(adaptive.numpy(), fixed.numpy(), rtol=1e-5)


# --- NewtonLossModel: logs, evaluation, saving, resuming ----------------------

def _data(rng, n=64):
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, :3] * 2.0 + 3.0).astype("float32")
    return x, y


def _model(jit_compile=False, seed=0, run_eagerly=False):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3)(inputs)
    model = kn.NewtonLossModel(inputs, outputs, damping="adaptive")
    model.compile(keras.optimizers.SGD(0.1), loss=keras.losses.LogCosh(),
                  jit_compile=jit_compile, run_eagerly=run_eagerly)
    return model


def _ratio(model):
    return float(model._newton_wrappers[0].damping_state.ratio.numpy())


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_model_logs_lambda_and_evaluation_does_not_adapt(mode, rng):
    x, y = _data(rng)
    # Eagerly, Keras rebuilds the logs it is given: the λ log must be a tensor.
    model = _model(jit_compile=mode == "xla", run_eagerly=mode == "eager")
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


# --- a bounded step on saturated losses ----------------------------------------

CCE = keras.losses.CategoricalCrossentropy(from_logits=True)


def _confidently_wrong(logit, rows=4, dtype=tf.float32):
    y_true = tf.constant([[0.0, 1.0, 0.0]] * rows, dtype)
    y_pred = tf.constant([[logit, 0.0, 0.0]] * rows, dtype)
    return y_true, y_pred


def test_saturated_softmax_step_stays_within_the_radius_and_grows_with_saturation(mode):
    # A fresh loss per logit: its first step has the rule's radius Δ = 1, so
    # ½‖s‖² <= ½. As the logit grows, κ → 0 (it underflows at 44): the step
    # must not shrink again (the old rule replaced κ = 0 by 1).
    values = []
    for logit in (5.0, 20.0, 42.0, 44.0, 1e30):
        y_true, y_pred = _confidently_wrong(logit)
        loss = kn.NewtonLoss(CCE, damping="adaptive", reduction=None)
        step_norms = np.sqrt(2.0 * run_in_mode(mode, loss, y_true, y_pred))
        assert np.all(np.isfinite(step_norms))
        assert np.all(step_norms <= AdaptiveDamping().radius * (1 + 1e-5))
        values.append(step_norms.max())
    # Finite logits saturate more and more; 1e30 is beyond float32's spacing
    # (a step of 1 does not change it), so it is only checked for finiteness.
    assert np.all(np.diff(values[:4]) >= -1e-6), values


def _saturated_model(jit_compile, bias=45.0, policy=None):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(
        3, kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant([bias, 0.0, 0.0]))(inputs)
    model = kn.NewtonLossModel(inputs, outputs, damping="adaptive")
    model.compile(keras.optimizers.SGD(1e-2), loss=CCE, jit_compile=jit_compile)
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_saturated_model_keeps_weights_bounded(jit_compile):
    model = _saturated_model(jit_compile)
    x = np.random.default_rng(0).normal(size=(96, 4)).astype("float32")
    y = np.tile([[0.0, 1.0, 0.0]], (96, 1)).astype("float32")
    state = model._newton_wrappers[0].damping_state
    rule = state.rule
    bound, radius = 0.0, rule.radius
    for batch in range(12):
        start = [w.copy() for w in model.get_weights()]
        xb = x[batch * 8:(batch + 1) * 8]
        model.train_on_batch(xb, y[batch * 8:(batch + 1) * 8])
        # Independent bound of one SGD step on mean_i ½‖z*_i - y_i‖²: the
        # kernel moves by at most lr · max|x| · Δ, the bias by lr · Δ.
        change = max(np.abs(a - b).max() for a, b in zip(model.get_weights(), start))
        assert change <= 1e-2 * max(1.0, np.abs(xb).max()) * radius * (1 + 1e-4)
        bound += 1e-2 * max(1.0, np.abs(xb).max()) * radius
        radius = min(radius * rule.factor, rule.max_radius)  # at most ×factor per step
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    assert max(np.abs(w).max() for w in weights) <= 45.0 + bound


def test_huge_finite_logits_give_finite_loss_and_weights():
    model = _saturated_model(True, bias=1e30)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.tile([[0.0, 1.0, 0.0]], (32, 1)).astype("float32")
    history = model.fit(x, y, batch_size=8, verbose=0)
    assert np.isfinite(history.history["newton_loss"]).all()
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_saturated_model_in_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = _saturated_model(True, bias=40.0)
        x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
        y = np.tile([[0.0, 1.0, 0.0]], (64, 1)).astype("float32")
        history = model.fit(x, y, batch_size=8, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(history.history["newton_loss"]).all()
    weights = model.get_weights()
    assert all(np.isfinite(w).all() for w in weights)
    # 8 steps of SGD(1e-2) with radii <= 1.5^7: the bias moves by < 2.
    assert np.abs(weights[1][0] - 40.0) < 2.0


# --- loaded state -------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, -1.0, 0.0, np.inf])
def test_damaged_ratio_is_reset_with_a_warning_and_training_proceeds(bad, rng):
    inputs = keras.Input((4,))
    model = kn.NewtonLossModel(inputs, keras.layers.Dense(3)(inputs), damping="adaptive")
    model.compile("sgd", loss=CCE)
    wrapper = model._newton_wrappers[0]
    with pytest.warns(RuntimeWarning, match="ratio"):
        wrapper.load_own_variables({"ratio": np.float32(bad), "damping": np.float32(0),
                                    "reduction_ratio": np.float32(0)})
    state = wrapper.damping_state
    assert float(state.ratio.numpy()) == pytest.approx(state.rule.initial)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, size=24)]
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, verbose=0)
    assert np.isfinite(history.history["damping"]).all()
    assert history.history["newton_loss"][0] > 0
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_damaged_radius_is_reset_and_old_files_without_radius_load():
    state = AdaptiveDamping(radius=2.0).new_state()
    with pytest.warns(RuntimeWarning, match="radius"):
        state.assign({"ratio": 0.5, "radius": np.nan})
    assert float(state.radius.numpy()) == 2.0 and float(state.ratio.numpy()) == 0.5
    state.radius.assign(8.0)
    state.assign({"ratio": 1e9, "damping": 0.1, "reduction_ratio": 0.5})  # no radius key
    assert float(state.radius.numpy()) == 2.0
    assert float(state.ratio.numpy()) == pytest.approx(1e6)  # clipped to maximum
