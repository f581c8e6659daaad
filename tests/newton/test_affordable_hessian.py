"""Affordable empirical Hessians: subsample, sketch, cached refresh, safeguards."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton import HessianEstimate, NewtonState, NewtonStep, Solver
from keras_newton.newton._autodiff import autodiff_derivatives
from keras_newton.newton._curvature_cache import CurvatureCache
from keras_newton.newton._eigen_solve import damped_solve, low_rank_damped_solve
from keras_newton.newton._sketch import (
    finite_difference_mean_hessian_products,
    mean_hessian_products,
    sketch_mean_hessian,
)
from keras_newton.shortest_path import relaxed_shortest_path
from conftest import run_in_mode

DAMPING = 0.05


def _coupled(y_true, y_pred):
    """Non-quadratic, coupled and indefinite: see _coupled_numpy."""
    d = y_pred - y_true
    return (tf.reduce_sum(tf.sqrt(1.0 + d**2) + 0.3 * tf.cos(y_pred), -1)
            + 0.25 * tf.reduce_sum(y_pred, -1) ** 2)


def _coupled_numpy(t, y):
    """Per-sample gradients and Hessians of _coupled, from the formula."""
    d = y - t
    g = d / np.sqrt(1 + d**2) - 0.3 * np.sin(y) + 0.5 * y.sum(-1, keepdims=True)
    m = y.shape[-1]
    h = np.stack([np.diag((1 + di**2) ** -1.5 - 0.3 * np.cos(yi)) for di, yi in zip(d, y)])
    return g, h + 0.5 * np.ones((m, m))


def _numpy_target(g, h_mean, y, damping=DAMPING, indefinite="abs"):
    e, v = np.linalg.eigh(0.5 * (h_mean + h_mean.T))
    t = np.abs(e) if indefinite == "abs" else np.maximum(e, 0)
    d = np.maximum(t + damping, 1e-6 * np.abs(e).max())
    return y - (g @ v / d) @ v.T


@pytest.fixture
def batch(rng):
    y = rng.normal(size=(10, 6)).astype(np.float32)
    t = rng.normal(size=(10, 6)).astype(np.float32)
    return t, y


def test_products_equal_the_mean_hessian(mode, batch, rng):
    t, y = batch
    vectors = rng.normal(size=(4, 6)).astype(np.float32)
    got = run_in_mode(mode, lambda a, b, v: mean_hessian_products(_coupled, a, b, v),
                      t, y, vectors)
    _, h = _coupled_numpy(t.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(got, vectors @ h.mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-8), (np.float32, 3e-3)])
def test_finite_difference_products_approach_the_mean_hessian(mode, batch, rng, dtype, rtol):
    t, y = (a.astype(dtype) for a in batch)
    vectors = rng.normal(size=(4, 6)).astype(dtype)
    got = run_in_mode(
        mode, lambda a, b, v: finite_difference_mean_hessian_products(_coupled, a, b, v),
        t, y, vectors)
    _, h = _coupled_numpy(t.astype(np.float64), y.astype(np.float64))
    want = vectors @ h.mean(0)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def test_finite_difference_sketch_through_while_loops_under_xla(rng):
    """Products from gradients only: the relaxed path as tf.while_loops (whose
    second derivatives do not compile under XLA) gets a Hessian sketch under
    XLA, equal within the finite-difference error to the exact target."""
    costs = tf.constant(rng.uniform(0.5, 3.0, size=(6, 4, 4)).astype(np.float32))
    path = tf.constant((rng.uniform(size=(6, 4, 4)) > 0.6).astype(np.float32))

    def loss(unroll):
        return lambda y_true, y_pred: tf.reduce_mean(tf.square(relaxed_shortest_path(
            y_pred, beta=2.0, n_iter=5, unroll=unroll) - y_true), axis=[1, 2])

    exact = kn.newton_target(loss(True), path, costs, damping=0.1)
    target = tf.function(lambda t, c: kn.newton_target(
        loss(False), t, c, NewtonStep(damping=0.1, estimate=HessianEstimate(
            rank=16, products="finite_differences"))), jit_compile=True)(path, costs)
    step = (costs - exact).numpy()
    np.testing.assert_allclose((costs - target).numpy(), step, atol=5e-3 * np.abs(step).max())


@pytest.mark.parametrize("options", [dict(rank=6), dict(samples=10),
                                     dict(samples=64), dict(rank=6, samples=10)])
def test_full_rank_or_whole_batch_equals_exact(mode, batch, options):
    t, y = batch
    exact = kn.newton_target(_coupled, t, y, damping=DAMPING).numpy()
    step = NewtonStep(damping=DAMPING, estimate=HessianEstimate(**options))
    got = run_in_mode(mode, lambda a, b: kn.newton_target(_coupled, a, b, step), t, y)
    g, h = _coupled_numpy(t.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(exact, _numpy_target(g, h.mean(0), y), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("indefinite", ["abs", "clip"])
def test_subsample_uses_the_first_samples_only(mode, batch, indefinite):
    t, y = batch
    got = run_in_mode(mode, lambda a, b: kn.newton_target(
        _coupled, a, b, NewtonStep(damping=DAMPING, estimate=HessianEstimate(samples=3),
                                   solver=Solver(indefinite=indefinite))), t, y)
    g, h = _coupled_numpy(t.astype(np.float64), y.astype(np.float64))
    want = _numpy_target(g, h[:3].mean(0), y, indefinite=indefinite)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The whole-batch Hessian differs, so the subsample really was used.
    assert np.abs(want - _numpy_target(g, h.mean(0), y, indefinite=indefinite)).max() > 1e-2


def test_sketch_recovers_a_low_rank_matrix(mode, rng):
    basis = np.linalg.qr(rng.normal(size=(12, 3)))[0]
    matrix = (basis * np.array([4.0, -2.0, 0.5])) @ basis.T

    def sketch():
        products = lambda v: tf.matmul(v, tf.constant(matrix, tf.float64))
        return sketch_mean_hessian(products, 12, 3, [3, 4], tf.float64)

    e, v = run_in_mode(mode, sketch)
    np.testing.assert_allclose((v * e) @ v.T, matrix, atol=1e-10)
    np.testing.assert_allclose(v.T @ v, np.eye(3), atol=1e-10)


@pytest.mark.parametrize("indefinite", ["abs", "clip"])
def test_low_rank_solve_against_the_projection_formula(mode, rng, indefinite):
    v = np.linalg.qr(rng.normal(size=(8, 3)))[0]
    e = np.array([3.0, -1.5, 0.4])
    rhs = rng.normal(size=(5, 8))
    got = run_in_mode(mode, lambda a, b, c: low_rank_damped_solve((a, b), c, 0.1, indefinite),
                      e, v, rhs)
    t = np.abs(e) if indefinite == "abs" else np.maximum(e, 0)
    rho = t.min()
    approx = (v * t) @ v.T + rho * (np.eye(8) - v @ v.T) + 0.1 * np.eye(8)
    np.testing.assert_allclose(got, rhs @ np.linalg.inv(approx), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("indefinite", ["abs", "clip"])
def test_full_rank_solve_equals_damped_solve(rng, indefinite):
    a = rng.normal(size=(7, 7))
    matrix = tf.constant(a + a.T)
    rhs = tf.constant(rng.normal(size=(4, 7)))
    e, v = tf.linalg.eigh(matrix)
    np.testing.assert_allclose(low_rank_damped_solve((e, v), rhs, 0.01, indefinite),
                               damped_solve(matrix, rhs, 0.01, indefinite), rtol=1e-9, atol=1e-9)


def test_sketch_of_the_relaxed_shortest_path_equals_the_jacobian_hessian(rng):
    costs = tf.constant(rng.uniform(0.5, 3.0, size=(3, 4, 4)))
    path = tf.constant((rng.uniform(size=(3, 4, 4)) > 0.6).astype(np.float64))

    def loss(y_true, y_pred):
        relaxed = relaxed_shortest_path(y_pred, beta=2.0, n_iter=5)
        return tf.reduce_mean(tf.square(relaxed - y_true), axis=[1, 2])

    _, exact = autodiff_derivatives(loss, path, costs, "hessian")
    flat_eye = tf.eye(16, dtype=tf.float64)
    products = mean_hessian_products(loss, path, costs, flat_eye)
    np.testing.assert_allclose(products.numpy(), exact.numpy(), rtol=1e-8, atol=1e-12)
    want = kn.newton_target(loss, path, costs, damping=1e-3)
    got = kn.newton_target(loss, path, costs, NewtonStep(
        damping=1e-3, estimate=HessianEstimate(rank=16)))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-7, atol=1e-9)


def _cached_target_fn(mode, cache):
    def target(a, b):
        step = NewtonStep(damping=DAMPING,
                          estimate=HessianEstimate(refresh_every=cache.refresh_every))
        return kn.newton_target(_coupled, a, b, step, state=NewtonState(hessian_cache=cache))

    if mode == "eager":
        return target
    return tf.function(target, jit_compile=mode == "xla")


def test_refresh_every_one_equals_exact(mode, batch):
    t, y = batch
    f = _cached_target_fn(mode, CurvatureCache(1))
    for shift in (0.0, 0.5):
        got = f(t, y + shift).numpy()
        want = kn.newton_target(_coupled, t, y + shift, damping=DAMPING).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cached_factorization_is_reused_between_refreshes(mode, batch):
    t, y = batch
    cache = CurvatureCache(3)
    f = _cached_target_fn(mode, cache)
    t64 = t.astype(np.float64)
    batches = [y + 0.4 * k for k in range(4)]
    hessians = [_coupled_numpy(t64, b.astype(np.float64))[1].mean(0) for b in batches]
    for k, b in enumerate(batches):
        got = f(t, b).numpy()
        g, _ = _coupled_numpy(t64, b.astype(np.float64))
        used = hessians[3 * (k // 3)]  # refreshed on calls 0 and 3
        np.testing.assert_allclose(got, _numpy_target(g, used, b), rtol=1e-4, atol=1e-4)
        if k % 3:
            fresh = _numpy_target(g, hessians[k], b)
            assert np.abs(got - fresh).max() > 1e-3  # stale, as intended
    assert int(cache.step.numpy()) == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(samples=0), "samples"),
        (dict(samples=2.5), "samples"),
        (dict(samples=True), "samples"),
        (dict(rank=-1), "rank"),
        (dict(refresh_every=0), "refresh_every"),
        (dict(seed="a"), "seed"),
        (dict(curvature="fisher", rank=3), "rank"),
        (dict(curvature="elementwise_hessian", samples=3), "samples"),
        (dict(curvature="fisher", refresh_every=2), "refresh_every"),
        (dict(rank=2, products="forward"), "products"),
        (dict(products="finite_differences"), "rank"),
    ],
)
def test_bad_options_raise(kwargs, match):
    kwargs = dict(kwargs)
    curvature = kwargs.pop("curvature", "hessian")

    def step():
        return NewtonStep(curvature, estimate=HessianEstimate(**kwargs))

    with pytest.raises(ValueError, match=match):
        kn.NewtonLoss("mse", step())
    with pytest.raises(ValueError, match=match):
        kn.NewtonLossModel(**_functional(), step=step())
    # The same options in their old flat spelling are named as they were.
    old = {f"hessian_{key}": value for key, value in kwargs.items()}
    with pytest.raises(ValueError, match=f"hessian_{match}"):
        NewtonStep.from_options(curvature=curvature, **old)


def _functional():
    inputs = keras.Input((3,))
    return dict(inputs=inputs, outputs=keras.layers.Dense(2)(inputs))


def test_rank_above_outputs_raises(batch):
    t, y = batch
    with pytest.raises(ValueError, match="rank"):
        kn.newton_target(_coupled, t, y, NewtonStep(estimate=HessianEstimate(rank=7)))


def test_options_serialize():
    estimate = HessianEstimate(samples=4, rank=2, seed=3, refresh_every=5,
                               products="finite_differences")
    loss = kn.NewtonLoss("mse", NewtonStep(estimate=estimate))
    restored = kn.NewtonLoss.from_config(loss.get_config())
    assert restored.step.estimate.get_config() == dict(
        samples=4, rank=2, seed=3, refresh_every=5, products="finite_differences")
    assert restored.hessian_cache.refresh_every == 5
    model = kn.NewtonLossModel(**_functional(), step=NewtonStep(estimate=HessianEstimate(
        samples=4, rank=2, refresh_every=3, products="finite_differences")))
    restored = kn.NewtonLossModel.from_config(model.get_config())
    assert restored.step.estimate.get_config() == dict(
        samples=4, rank=2, seed=0, refresh_every=3, products="finite_differences")


def _path_loss(y_true, y_pred):
    relaxed = relaxed_shortest_path(y_pred, beta=5.0, n_iter=3)
    return tf.reduce_mean(tf.abs(relaxed - y_true), axis=[1, 2])


def _path_data(rng):
    x = rng.normal(size=(16, 8)).astype(np.float32)
    y = (rng.uniform(size=(16, 3, 3)) > 0.5).astype(np.float32)
    return x, y


def _cost_net(inputs):
    hidden = keras.layers.Dense(9, activation="softplus")(inputs)
    return keras.layers.Reshape((3, 3))(hidden)


@pytest.mark.parametrize("use_model, jit_compile", [(True, True), (False, False)])
def test_fit_stays_finite(rng, use_model, jit_compile):
    keras.utils.set_random_seed(0)
    x, y = _path_data(rng)
    step = NewtonStep(estimate=HessianEstimate(samples=4, rank=5, refresh_every=2))
    inputs = keras.Input((8,))
    if use_model:
        model = kn.NewtonLossModel(inputs, _cost_net(inputs), step=step)
        model.compile("adam", loss=_path_loss, jit_compile=jit_compile)
    else:
        model = keras.Model(inputs, _cost_net(inputs))
        model.compile("adam", loss=kn.NewtonLoss(_path_loss, step), run_eagerly=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [w.numpy() for w in model.trainable_weights]
    assert all(np.all(np.isfinite(w)) for w in after)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))
    wrappers = model._newton_wrappers.values() if use_model else [model.loss]
    assert [int(w.hessian_cache.step.numpy()) for w in wrappers] == [4]


def test_benchmark_smoke():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
    import benchmark_warcraft_hessian as bench

    affordable = dict(samples=2, rank=3, refresh_every=2)
    variants = {"regular": None, "affordable": affordable,
                "regular_while": dict(regular=True, unroll=False),
                "affordable_while_fd": dict(affordable, unroll=False,
                                            products="finite_differences")}
    overhead = bench.step_overhead(variants, batch_size=2, image_size=16, grid_size=3,
                                   n_iter=3, steps=2, jit_compile=False, log=lambda s: None,
                                   run_eagerly=True)
    assert overhead["regular"]["median_ratio"] == overhead["regular_while"]["median_ratio"] == 1.0
    assert overhead["affordable_while_fd"]["baseline"] == "regular_while"
    assert overhead["affordable"]["baseline"] == "regular"
    assert np.isfinite(overhead["affordable"]["mean_ratio"])
    assert np.isfinite(overhead["affordable_while_fd"]["mean_ratio"])
    variants = {name: variants[name] for name in ("regular", "affordable")}
    assert "| affordable |" in bench.format_overhead(overhead)
    accuracy = bench.terrain_accuracy(variants, seeds=(0, 1), num_train=4, num_test=2,
                                      grid_size=3, tile_size=6, epochs=1, batch_size=4,
                                      n_iter=3, log=lambda s: None, run_eagerly=True)
    for entry in accuracy.values():
        assert 0.0 <= entry["perfect_match"][0] <= 1.0
        assert entry["cost_ratio"][0] >= 1.0 - 1e-6
        assert len(entry["runs"]) == 2
    assert "± " in bench.format_accuracy(accuracy)


_MIRRORED_SCRIPT = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras_newton as kn

def loss(t, y):
    return tf.reduce_sum(tf.sqrt(1.0 + (y - t) ** 2) + 0.3 * tf.cos(y), -1) \\
        + 0.25 * tf.reduce_sum(y, -1) ** 2

rng = np.random.default_rng(0)
y = rng.normal(size=(8, 6)); t = rng.normal(size=(8, 6))
options = kn.NewtonStep(damping=0.05, estimate=kn.newton.HessianEstimate(rank=4, seed=7))
single = kn.newton_target(loss, t, y, options).numpy()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
data = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((t, y)).batch(8))
replicas = strategy.run(lambda b: kn.newton_target(loss, b[0], b[1], options),
                        args=(next(iter(data)),))
mirrored = np.concatenate([r.numpy() for r in strategy.experimental_local_results(replicas)])
np.testing.assert_allclose(mirrored, single, rtol=1e-9, atol=1e-9)
print("OK", np.abs(mirrored - single).max())
print("keras_newton from:", kn.__file__)
"""


def test_sketch_under_mirrored_strategy_equals_single_device():
    import subprocess

    # Import this checkout's keras_newton in the subprocess, whatever is installed.
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True,
                            text=True, timeout=240, env=env)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
    imported = os.path.join(repo_root, "keras_newton", "__init__.py")
    assert f"keras_newton from: {imported}" in result.stdout
