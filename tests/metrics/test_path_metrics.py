"""PerfectMatch and CostRatio on hand-computed cases, modes, weights, serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.metrics import CostRatio, PerfectMatch
from keras_newton.metrics.path_metrics import cost_ratio, perfect_match
from keras_newton.shortest_path import shortest_path

# True costs: the cheapest path is (0,0) (1,0) (2,1) (2,2), cost 4.
TRUE_COSTS = np.array([[1.0, 9.0, 9.0], [1.0, 9.0, 9.0], [9.0, 1.0, 1.0]], "float32")
TRUE_PATH = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1]], "float32")
# Predicted costs whose cheapest path is (0,0) (0,1) (1,2) (2,2): true cost
# 1 + 9 + 9 + 1 = 20, five times the optimum.
WRONG_COSTS = np.array([[1.0, 1.0, 1.0], [9.0, 9.0, 1.0], [9.0, 9.0, 1.0]], "float32")
WRONG_PATH = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 1]], "float32")


def test_hand_computed_per_sample_values(mode):
    predictions = tf.constant(np.stack([TRUE_COSTS * 2.0, WRONG_COSTS]))
    truths = tf.constant(np.stack([TRUE_PATH, TRUE_PATH]))
    costs = tf.constant(np.stack([TRUE_COSTS, TRUE_COSTS]))
    match, ratio = run_in_mode(
        mode, lambda p, t, c: (perfect_match(t, p), cost_ratio(c, p)), predictions, truths, costs
    )
    np.testing.assert_array_equal(match, [1.0, 0.0])
    np.testing.assert_allclose(ratio, [1.0, 5.0], rtol=1e-6)
    # Path masks instead of cost maps (thresholded at 0.5).
    masks = tf.constant(np.stack([TRUE_PATH * 0.9, WRONG_PATH * 0.7]))
    np.testing.assert_array_equal(perfect_match(truths, masks, from_costs=False), [1.0, 0.0])
    np.testing.assert_allclose(cost_ratio(costs, masks, from_costs=False), [1.0, 5.0], rtol=1e-6)


def test_metric_means_weights_and_reset():
    predictions = np.stack([TRUE_COSTS, WRONG_COSTS, WRONG_COSTS])
    truths, costs = np.stack([TRUE_PATH] * 3), np.stack([TRUE_COSTS] * 3)
    match, ratio = PerfectMatch(), CostRatio()
    match.update_state(truths, predictions)
    ratio.update_state(costs, predictions)
    np.testing.assert_allclose(match.result(), 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(ratio.result(), (1 + 5 + 5) / 3, rtol=1e-6)
    match.reset_state()
    match.update_state(truths, predictions, sample_weight=[3.0, 1.0, 0.0])
    np.testing.assert_allclose(match.result(), 0.75, rtol=1e-6)
    ratio.reset_state()
    ratio.update_state(costs, predictions, sample_weight=[1.0, 0.0, 1.0])
    np.testing.assert_allclose(ratio.result(), 3.0, rtol=1e-6)


def test_random_maps_against_exact_solver(rng):
    costs = rng.uniform(0.1, 2.0, size=(8, 6, 6)).astype("float32")
    noisy = costs + rng.normal(scale=0.5, size=costs.shape).astype("float32")
    predicted = shortest_path(tf.constant(noisy)).numpy()
    truth = shortest_path(tf.constant(costs)).numpy()
    expected_match = (predicted == truth).all(axis=(1, 2)).astype("float32")
    expected_ratio = (costs * predicted).sum((1, 2)) / (costs * truth).sum((1, 2))
    np.testing.assert_array_equal(perfect_match(truth, noisy), expected_match)
    np.testing.assert_allclose(cost_ratio(costs, noisy), expected_ratio, rtol=1e-6)
    assert np.all(expected_ratio >= 1 - 1e-6)


@pytest.mark.parametrize("metric", [PerfectMatch(from_costs=False, name="pm"), CostRatio()])
def test_get_config_round_trip(metric):
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(restored) is type(metric) and restored.get_config() == metric.get_config()


def test_compiled_model_with_metric_round_trips(tmp_path, rng):
    x = rng.uniform(0.1, 1.0, size=(8, 9)).astype("float32")
    y = shortest_path(tf.constant(x.reshape(8, 3, 3))).numpy()
    inputs = keras.Input((9,))
    model = keras.Model(inputs, keras.layers.Reshape((3, 3))(keras.layers.Dense(9)(inputs)))
    model.compile("sgd", loss="mse", metrics=[PerfectMatch()], jit_compile=True)
    results = model.evaluate(x, y, verbose=0, return_dict=True)
    predicted = shortest_path(model.predict(x, verbose=0)).numpy()
    np.testing.assert_allclose(results["perfect_match"], (predicted == y).all(axis=(1, 2)).mean(), rtol=1e-6)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored.evaluate(x, y, verbose=0, return_dict=True)["perfect_match"],
                               results["perfect_match"])


@pytest.mark.parametrize("dtype", ["uint8", "int32", "bool", "float64"])
def test_true_path_masks_of_any_dtype(mode, dtype):
    predictions = tf.constant(np.stack([TRUE_COSTS * 2.0, WRONG_COSTS]))
    truths = tf.constant(np.stack([TRUE_PATH, TRUE_PATH]).astype(dtype))
    match = run_in_mode(mode, lambda p, t: perfect_match(t, p), predictions, truths)
    np.testing.assert_array_equal(match, [1.0, 0.0])
    metric = PerfectMatch()
    metric.update_state(truths, predictions)
    assert float(metric.result()) == 0.5


def test_bad_input():
    with pytest.raises(ValueError, match="y_pred"):
        perfect_match(tf.ones([3]), tf.ones([3]))
    with pytest.raises(TypeError, match="costs"):
        cost_ratio(tf.ones([1, 3, 3]), tf.ones([1, 3, 3], tf.int32))
