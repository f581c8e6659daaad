"""ShortestPathLoss: values, reductions, derivatives, serialization, Newton training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from conftest import run_in_mode
from keras_newton.newton import _autodiff as autodiff_lib
from keras_newton.losses import ShortestPathLoss
from keras_newton.shortest_path import relaxed_shortest_path, shortest_path


def _maps(rng, n=3, h=4, w=5, dtype="float64"):
    costs = rng.uniform(0.2, 1.5, size=(n, h, w)).astype(dtype)
    truth = shortest_path(tf.constant(rng.uniform(0.2, 1.5, size=(n, h, w)).astype(dtype))).numpy()
    return truth, costs


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_values_are_cell_means_of_the_distance(mode, distance, rng):
    truth, costs = _maps(rng)
    loss = ShortestPathLoss(distance, beta=5.0, n_iter=8, loop="while")
    out = run_in_mode(mode, loss.call, tf.constant(truth), tf.constant(costs))
    path = relaxed_shortest_path(tf.constant(costs), beta=5.0, n_iter=8, loop="while").numpy()
    diff = path - truth
    expected = (np.abs(diff) if distance == "l1" else diff**2).mean(axis=(1, 2))
    assert out.shape == (3,)
    np.testing.assert_allclose(out, expected, rtol=1e-10)


def test_zero_at_the_hard_limit(rng):
    # β → ∞ with an absorbing source reproduces the exact path of the costs.
    costs = rng.uniform(0.2, 1.2, size=(3, 5, 5))
    truth = shortest_path(tf.constant(costs))
    loss = ShortestPathLoss("l1", beta=1e5, n_iter=25, absorbing_source=True, reduction=None)
    np.testing.assert_allclose(loss(truth, tf.constant(costs)), 0.0, atol=1e-6)
    assert float(ShortestPathLoss("l1", beta=1.0, n_iter=25)(truth, tf.constant(costs))) > 0.05


def test_reductions_and_sample_weight(rng):
    truth, costs = _maps(rng, n=4)
    truth, costs = tf.constant(truth, tf.float32), tf.constant(costs, tf.float32)
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    per_sample = ShortestPathLoss("l2", reduction=None)(truth, costs).numpy()
    assert per_sample.shape == (4,)
    summed = ShortestPathLoss("l2", reduction="sum")(truth, costs, sample_weight=weights)
    np.testing.assert_allclose(summed, (per_sample * weights).sum(), rtol=1e-6)
    mean = ShortestPathLoss("l2")(truth, costs, sample_weight=weights)
    np.testing.assert_allclose(mean, (per_sample * weights).mean(), rtol=1e-6)


def test_get_config_round_trip(rng):
    truth, costs = _maps(rng)
    loss = ShortestPathLoss("l2", beta=3.0, n_iter=6, loop="while", t_conorm="hamacher", p=1.5,
                            max_iter=50, epsilon=1e-4, absorbing_source=True, unroll=False)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, ShortestPathLoss)
    assert restored.get_config() == loss.get_config()
    np.testing.assert_allclose(restored(truth, costs), loss(truth, costs), rtol=1e-12)


def test_gradient_matches_finite_differences(rng):
    truth, costs = _maps(rng, n=1, h=3, w=3)
    loss = ShortestPathLoss("l2", beta=2.0, n_iter=4, reduction="sum", dtype="float64")
    fn = tf.function(lambda c: loss(tf.constant(truth), c))
    analytic, numeric = tf.test.compute_gradient(fn, [tf.constant(costs)], delta=1e-6)
    np.testing.assert_allclose(analytic[0], numeric[0], rtol=1e-5, atol=1e-9)


def test_nested_tape_hessian_matches_finite_differences(rng):
    # The exact per-sample Hessian that NewtonLoss uses (curvature
    # "elementwise_hessian" through nested tapes) vs central differences of
    # the gradient, on 2×3 grids.
    truth, costs = _maps(rng, n=2, h=2, w=3)
    loss = ShortestPathLoss("l2", beta=2.0, n_iter=4)
    per_sample = autodiff_lib.per_sample_loss_fn(loss)
    y_true, y = tf.constant(truth), tf.constant(costs)
    gradients, hessians = tf.function(lambda y: autodiff_lib.autodiff_derivatives(
        per_sample, y_true, y, "elementwise_hessian"))(y)

    def gradient_at(y):
        with tf.GradientTape() as tape:
            tape.watch(y)
            total = tf.reduce_sum(per_sample(y_true, y))
        return tf.reshape(tape.gradient(total, y), [2, 6]).numpy()

    eps = 1e-5
    numeric = np.zeros((2, 6, 6))
    for k in range(6):
        step = np.zeros((2, 6))
        step[:, k] = eps
        step = tf.constant(step.reshape(2, 2, 3))
        numeric[:, :, k] = (gradient_at(y + step) - gradient_at(y - step)) / (2 * eps)
    np.testing.assert_allclose(gradients, gradient_at(y), rtol=1e-10)
    np.testing.assert_allclose(hessians, numeric, rtol=1e-5, atol=1e-8)


def _cost_model(h=3, w=3):
    inputs = keras.Input((h * w,))
    costs = keras.layers.Dense(h * w, "softplus")(inputs)
    return inputs, keras.layers.Reshape((h, w))(costs)


def _path_data(rng, n=16, h=3, w=3):
    x = rng.uniform(0.1, 1.0, size=(n, h * w)).astype("float32")
    return x, shortest_path(tf.constant(x.reshape(n, h, w))).numpy()


# Tiny grids and few sweeps: XLA compile time of the (unrolled) relaxed path
# and of its nested-tape Hessian dominates these tests (the Hessian case, two
# minutes, runs with -m slow; test_affordable_hessian's test_fit_stays_finite
# trains a path Hessian under XLA in the default suite).
@pytest.mark.parametrize("curvature", [pytest.param("hessian", marks=pytest.mark.slow),
                                       "fisher"])
def test_newton_loss_fit_jit(curvature, rng):
    x, y = _path_data(rng)
    keras.utils.set_random_seed(0)
    model = keras.Model(*_cost_model())
    wrapped = ShortestPathLoss("l1", beta=5.0, n_iter=4)
    model.compile(keras.optimizers.Adam(1e-2), loss=kn.NewtonLoss(wrapped, curvature=curvature, damping=0.1),
                  jit_compile=True)
    before = model.get_weights()
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    after = model.get_weights()
    assert all(np.isfinite(v).all() for v in after)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))


def test_compiled_model_round_trips_through_keras_file(rng, tmp_path):
    x, y = _path_data(rng)
    model = keras.Model(*_cost_model())
    wrapped = ShortestPathLoss("l2", beta=5.0, n_iter=4, loop="while")
    model.compile("adam", loss=kn.NewtonLoss(wrapped, curvature="fisher", damping=0.1),
                  metrics=[ShortestPathLoss("l1", beta=5.0, n_iter=4, name="path_l1")])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored.loss.loss, ShortestPathLoss)
    assert restored.loss.loss.get_config() == wrapped.get_config()
    np.testing.assert_allclose(restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)


def test_newton_loss_model_fit_jit_and_keras_file(rng, tmp_path):
    x, y = _path_data(rng)
    keras.utils.set_random_seed(0)
    model = kn.NewtonLossModel(*_cost_model(), curvature="fisher", damping=0.1)
    model.compile(keras.optimizers.Adam(1e-2), loss=ShortestPathLoss("l2", beta=5.0, n_iter=4), jit_compile=True)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all() and np.isfinite(history["newton_loss"]).all()
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored.loss, ShortestPathLoss)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="loss"):
        ShortestPathLoss("l3")
    with pytest.raises(ValueError, match="beta"):
        ShortestPathLoss(beta=0.0)
    with pytest.raises(ValueError, match="loop"):
        ShortestPathLoss(loop="until")
    with pytest.raises(ValueError, match="p"):
        ShortestPathLoss(t_conorm="hamacher")
    with pytest.raises(ValueError, match="y_pred"):
        ShortestPathLoss()(tf.ones([2, 9]), tf.ones([2, 9]))
    with pytest.raises(ValueError, match="y_true"):
        ShortestPathLoss()(tf.ones([2, 3, 4]), tf.ones([2, 3, 3]))
    with pytest.raises(TypeError, match="costs"):
        ShortestPathLoss().call(tf.ones([2, 3, 3]), tf.ones([2, 3, 3], tf.float16))
