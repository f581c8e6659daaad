"""Ranking metrics: hand-computed cases, the diffsort formulas, Keras usage."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.metrics.ranking_metrics import (
    ElementwiseRankAccuracy,
    OrderingExactMatch,
    elementwise_rank_accuracy,
    ordering_exact_match,
)

# (y_true, y_pred, element-wise accuracy, exact match), computed by hand.
HAND_CASES = [
    # true ranks [0, 2, 1, 3], predicted [0, 1, 2, 3]: items 0 and 3 right.
    ([10.0, 30.0, 20.0, 40.0], [0.1, 0.2, 0.3, 0.4], 0.5, 0.0),
    # perfect, with scores on another scale and shifted.
    ([3.0, 1.0, 2.0], [5.0, -7.0, 0.0], 1.0, 1.0),
    # completely reversed, n = 4: no item keeps its rank.
    ([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], 0.0, 0.0),
    # reversed, n = 3: only the middle item is right.
    ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], 1 / 3, 0.0),
    # ties in y_true: items 0 and 1 share ranks {0, 1}; either order is right.
    ([1.0, 1.0, 2.0], [0.2, 0.1, 0.5], 1.0, 1.0),
    # ties in y_pred keep the input order: predicted ranks [0, 1, 2] vs [1, 0, 2].
    ([2.0, 1.0, 3.0], [0.0, 0.0, 1.0], 1 / 3, 0.0),
]


@pytest.mark.parametrize("y_true,y_pred,accuracy,exact", HAND_CASES)
def test_hand_computed_cases(y_true, y_pred, accuracy, exact):
    y_true, y_pred = np.array([y_true], np.float32), np.array([y_pred], np.float32)
    np.testing.assert_allclose(elementwise_rank_accuracy(y_true, y_pred), [accuracy], rtol=1e-6)
    np.testing.assert_array_equal(ordering_exact_match(y_true, y_pred), [exact])


def test_metric_classes_average_over_batches_with_weights():
    accuracy, exact = ElementwiseRankAccuracy(), OrderingExactMatch()
    for (t, p, _, _) in HAND_CASES[:2] + HAND_CASES[3:4]:
        accuracy.update_state([t], [p])
        exact.update_state([t], [p])
    np.testing.assert_allclose(accuracy.result(), (0.5 + 1.0 + 1 / 3) / 3, rtol=1e-6)
    np.testing.assert_allclose(exact.result(), 1 / 3, rtol=1e-6)
    weighted = ElementwiseRankAccuracy()
    weighted.update_state(
        [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]],
        sample_weight=[3.0, 1.0],
    )
    np.testing.assert_allclose(weighted.result(), (3 * 1.0 + 1 / 3) / 4, rtol=1e-6)
    weighted.reset_state()
    assert float(weighted.result()) == 0.0


def test_matches_diffsort_argsort_formulas_without_ties(mode, rng):
    """acc_ew = mean(argsort(s) == argsort(y)), acc_em = all(...) (Petersen et al.)."""
    y_true = np.stack([rng.permutation(5) for _ in range(24)]).astype(np.float32)
    y_pred = (y_true + rng.normal(scale=0.4, size=y_true.shape)).astype(np.float32)
    y_true, y_pred = y_true.reshape(4, 6, 5), y_pred.reshape(4, 6, 5)  # leading dims
    same = np.argsort(y_pred, axis=-1) == np.argsort(y_true, axis=-1)
    accuracy = run_in_mode(mode, elementwise_rank_accuracy, tf.constant(y_true), tf.constant(y_pred))
    exact = run_in_mode(mode, ordering_exact_match, tf.constant(y_true), tf.constant(y_pred))
    assert accuracy.shape == exact.shape == (4, 6)
    np.testing.assert_allclose(accuracy, same.mean(-1), rtol=1e-6)
    np.testing.assert_array_equal(exact, same.all(-1).astype(np.float32))
    assert 0 < exact.mean() < 1 and 0 < accuracy.mean() < 1  # the data tests both


def test_integer_ranks_as_targets():
    ranks = np.array([[2, 0, 1]], np.int32)
    np.testing.assert_allclose(
        elementwise_rank_accuracy(ranks, np.array([[0.9, 0.1, 0.5]], np.float32)), [1.0]
    )


@pytest.mark.parametrize("cls", [ElementwiseRankAccuracy, OrderingExactMatch])
def test_serialization_round_trip(cls):
    metric = cls(name="ranked")
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert type(restored) is cls and restored.name == "ranked"
    assert restored.get_config() == metric.get_config()
    assert cls.from_config(metric.get_config()).get_config() == metric.get_config()


def test_usable_in_compile_fit_evaluate_and_saved_model(tmp_path, rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6, 2)), keras.layers.Dense(1), keras.layers.Reshape((6,))]
    )
    model.compile(
        "sgd", loss="mse", metrics=[ElementwiseRankAccuracy(), OrderingExactMatch()],
        jit_compile=True,
    )
    x = rng.normal(size=(32, 6, 2)).astype(np.float32)
    y = (x[..., 0] - x[..., 1]).astype(np.float32)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert {"rank_accuracy", "exact_match"} <= set(history)
    results = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    scores = model.predict(x, verbose=0)
    same = np.argsort(scores, -1) == np.argsort(y, -1)
    np.testing.assert_allclose(results["rank_accuracy"], same.mean(), rtol=1e-5)
    np.testing.assert_allclose(results["exact_match"], same.all(-1).mean(), rtol=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    restored_results = restored.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    for key in ("rank_accuracy", "exact_match"):
        np.testing.assert_allclose(restored_results[key], results[key], rtol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="y_true"):
        elementwise_rank_accuracy(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="y_pred"):
        ordering_exact_match(np.float32(1.0), np.float32(1.0))
