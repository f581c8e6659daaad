"""SortingLoss: per-sample BCE and positional CE against NumPy references, ties, Keras contract."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.losses.sorting_loss import SortingLoss
from test_sorting_diff_sort import np_diff_sort
from test_sorting_relaxed import np_neural_sort, np_soft_sort

EPS = 1e-7  # keras.config.epsilon()

# (sorter, options, NumPy reference of one vector -> (sorted, P))
CASES = [
    (
        "diff_sort",
        {"network": "odd_even", "relaxation": "logistic", "steepness": 4.0},
        lambda s: np_diff_sort(s, "odd_even", "logistic", 4.0),
    ),
    (
        "diff_sort",
        {"network": "bitonic", "relaxation": "cauchy", "steepness": 3.0},
        lambda s: np_diff_sort(s, "bitonic", "cauchy", 3.0),
    ),
    ("neural_sort", {"tau": 0.5}, lambda s: np_neural_sort(s, 0.5)),
    ("soft_sort", {"tau": 0.3, "power": 2.0}, lambda s: np_soft_sort(s, 0.3, 2.0)),
]
IDS = ["odd_even_logistic", "bitonic_cauchy", "neural_sort", "soft_sort_p2"]


def np_true_permutation(y):
    """One-hot of the stable ascending order: [i, j] = item i at position j."""
    order = np.argsort(y, kind="stable")
    q = np.zeros((y.size, y.size))
    q[order, np.arange(y.size)] = 1.0
    return q


def np_average_permutation(y):
    """Mean of all permutation matrices that sort ``y`` (brute force)."""
    total, count = np.zeros((y.size, y.size)), 0
    for order in itertools.permutations(range(y.size)):
        if np.all(np.diff(y[list(order)]) >= 0):
            total[list(order), np.arange(y.size)] += 1.0
            count += 1
    return total / count


def np_bce(q, p, eps=EPS):
    """Mean over the n x n entries; log p as log(p + eps) - log(1 + eps)."""
    log_p = np.log(p + eps) - np.log1p(eps)
    log_not_p = np.log(1 - p + eps) - np.log1p(eps)
    return -(q * log_p + (1 - q) * log_not_p).mean(axis=(-2, -1))


def np_sorting_loss(y_true, y_pred, reference, true_permutation=np_true_permutation):
    flat_true = y_true.reshape(-1, y_true.shape[-1]).astype(np.float64)
    flat_pred = y_pred.reshape(-1, y_pred.shape[-1]).astype(np.float64)
    values = [
        np_bce(true_permutation(t), reference(s)[1]) for t, s in zip(flat_true, flat_pred)
    ]
    return np.asarray(values).reshape(y_true.shape[:-1])


def _batch(rng, shape):
    y_true = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32)
    y_pred = (0.1 * y_true + rng.normal(size=shape)).astype(np.float32)
    return y_true, y_pred


@pytest.mark.parametrize("sorter,options,reference", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_sample_values_match_numpy_reference(sorter, options, reference, dtype, rng):
    # float32: where P is within ~1e-7 of 1, log(1 - P + eps) keeps only a few
    # bits of 1 - P, so the float32 loss is accurate to ~1e-2 relative only.
    tol = 1e-2 if dtype == np.float32 else 1e-10
    for shape in [(4, 5), (2, 3, 10)]:  # leading dims are per-sample axes
        y_true, y_pred = _batch(rng, shape)
        y_true, y_pred = y_true.astype(dtype), y_pred.astype(dtype)
        values = SortingLoss(sorter, **options).call(y_true, y_pred).numpy()
        assert values.shape == shape[:-1] and values.dtype == dtype
        expected = np_sorting_loss(y_true, y_pred, reference)
        np.testing.assert_allclose(values, expected, rtol=tol, atol=tol * 1e-2)


def test_plain_bce_where_not_saturated(rng):
    y_true, y_pred = _batch(rng, (3, 6))
    loss = SortingLoss("neural_sort", tau=2.0)  # smooth: P far from 0 and 1
    _, p = np_neural_sort(y_pred[0], 2.0)
    q = np_true_permutation(y_true[0])
    plain = -(q * np.log(p) + (1 - q) * np.log(1 - p)).mean()
    np.testing.assert_allclose(loss.call(y_true, y_pred)[0], plain, rtol=1e-5)


@pytest.mark.parametrize("sorter,options,reference", CASES, ids=IDS)
def test_modes_agree_with_reference(mode, sorter, options, reference, rng):
    y_true, y_pred = _batch(rng, (3, 7))
    loss = SortingLoss(sorter, **options)
    values = run_in_mode(mode, loss.call, tf.constant(y_true), tf.constant(y_pred))
    expected = np_sorting_loss(y_true, y_pred, reference)
    np.testing.assert_allclose(values, expected, rtol=1e-2)
    # The three modes agree with each other far more tightly.
    eager = loss.call(y_true, y_pred).numpy()
    np.testing.assert_allclose(values, eager, rtol=2e-4)


def test_exact_order_gives_zero_and_reverse_is_worse(rng):
    y_true = rng.permutation(6).astype(np.float32)[None]
    sharp = SortingLoss("diff_sort", relaxation="logistic", steepness=1e4)
    np.testing.assert_allclose(sharp(y_true, y_true), 0.0, atol=1e-6)
    # Reversed order, n = 6 (even: no item keeps its rank): each item puts a
    # 0 where Q has 1 and a 1 where Q has 0, 2n entries at -log(eps) each.
    reverse = float(sharp(y_true, -y_true))
    wrong = 2 * 6
    expected = -(np.log(EPS) - np.log1p(EPS)) * wrong / 36.0
    np.testing.assert_allclose(reverse, expected, rtol=1e-3)


def test_ties_stable_is_input_order_and_documented_choice(rng):
    y_pred = rng.normal(size=(1, 5)).astype(np.float32)
    tied = np.array([[2.0, 1.0, 2.0, 0.0, 1.0]], np.float32)
    # "stable": the first of tied items comes first, exactly as if it were smaller.
    broken = np.array([[2.0, 1.0, 2.5, 0.0, 1.5]], np.float32)
    loss = SortingLoss("neural_sort", tau=0.5)
    np.testing.assert_allclose(loss.call(tied, y_pred), loss.call(broken, y_pred), rtol=1e-6)
    # Deterministic: the same tie resolution in every mode (XLA included).
    values = [run_in_mode(m, loss.call, tf.constant(tied), tf.constant(y_pred)) for m in ("eager", "xla")]
    np.testing.assert_allclose(values[0], values[1], rtol=1e-6)
    expected = np_sorting_loss(tied, y_pred, lambda s: np_neural_sort(s, 0.5))
    np.testing.assert_allclose(values[1], expected, rtol=1e-5)


def test_ties_average_matches_brute_force_and_ignores_tied_order(rng):
    y_pred = rng.normal(size=(1, 5)).astype(np.float32)
    tied = np.array([[2.0, 1.0, 2.0, 0.0, 1.0]], np.float32)
    loss = SortingLoss("neural_sort", ties="average", tau=0.5)
    expected = np_sorting_loss(
        tied, y_pred, lambda s: np_neural_sort(s, 0.5), np_average_permutation
    )
    np.testing.assert_allclose(loss.call(tied, y_pred), expected, rtol=1e-5)
    # Swapping two tied items (and their scores) permutes nothing in the loss.
    swap = [2, 1, 0, 3, 4]
    np.testing.assert_allclose(
        loss.call(tied[:, swap], y_pred[:, swap]), loss.call(tied, y_pred), rtol=1e-5
    )


def test_sample_weight_and_reductions(rng):
    y_true, y_pred = _batch(rng, (4, 5))
    weights = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
    per_sample = SortingLoss(relaxation="logistic", reduction=None)(y_true, y_pred).numpy()
    assert per_sample.shape == (4,)
    np.testing.assert_allclose(
        SortingLoss(relaxation="logistic").call(y_true, y_pred), per_sample, rtol=1e-6
    )
    total = SortingLoss(relaxation="logistic", reduction="sum")(y_true, y_pred, sample_weight=weights)
    np.testing.assert_allclose(total, (per_sample * weights).sum(), rtol=1e-6)
    mean = SortingLoss(relaxation="logistic")(y_true, y_pred, sample_weight=weights)
    np.testing.assert_allclose(mean, (per_sample * weights).mean(), rtol=1e-6)
    unweighted = SortingLoss(relaxation="logistic", reduction="mean")(y_true, y_pred)
    np.testing.assert_allclose(unweighted, per_sample.mean(), rtol=1e-6)


@pytest.mark.parametrize("loss", [
    SortingLoss("diff_sort", relaxation="logistic", steepness=2.0),
    SortingLoss("soft_sort", objective="positional_ce", tau=0.5),
], ids=["diff_sort_bce", "soft_sort_positional_ce"])
def test_gradient_matches_finite_differences(loss, rng):
    y_true = rng.permutation(5).astype(np.float64)[None]
    y_pred = rng.normal(size=(1, 5))
    theoretical, numerical = tf.test.compute_gradient(
        lambda s: loss.call(tf.constant(y_true), s), [tf.constant(y_pred)]
    )
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("sorter,options,reference", CASES, ids=IDS)
def test_config_round_trip(sorter, options, reference, rng):
    loss = SortingLoss(sorter, name="ranking", reduction="sum", **options)
    config = loss.get_config()
    assert config["sorter"] == sorter and all(config[k] == v for k, v in options.items())
    for restored in (
        SortingLoss.from_config(config),
        keras.losses.deserialize(keras.losses.serialize(loss)),
    ):
        assert isinstance(restored, SortingLoss)
        assert restored.get_config() == config
        y_true, y_pred = _batch(rng, (3, 5))
        np.testing.assert_allclose(restored(y_true, y_pred), loss(y_true, y_pred), rtol=1e-6)


def test_numpy_scalar_options_are_stored_as_python_floats():
    config = SortingLoss(steepness=np.float32(7.5)).get_config()
    assert type(config["steepness"]) is float and config["steepness"] == 7.5


@pytest.mark.parametrize("loss", [
    SortingLoss("diff_sort", ties="average", relaxation="logistic", steepness=5.0),
    SortingLoss("soft_sort", objective="positional_ce", tau=0.5),
], ids=["diff_sort_bce", "soft_sort_positional_ce"])
def test_compiled_model_saves_and_loads(loss, tmp_path, rng):
    from keras_newton.metrics.ranking_metrics import ElementwiseRankAccuracy, OrderingExactMatch

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((5, 3)), keras.layers.Dense(1), keras.layers.Reshape((5,))]
    )
    model.compile(
        "sgd", loss=loss, metrics=[OrderingExactMatch(), ElementwiseRankAccuracy()]
    )
    x = rng.normal(size=(8, 5, 3)).astype(np.float32)
    y = x[..., 0]
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, SortingLoss)
    assert restored.loss.objective == loss.objective
    assert restored.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(
        restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5
    )


def test_distribution_relaxation_works_but_refuses_to_serialize(rng):
    import tensorflow_probability as tfp

    loss = SortingLoss(relaxation=tfp.distributions.Logistic(0.0, 1.0), steepness=4.0)
    y_true, y_pred = _batch(rng, (2, 4))
    reference = SortingLoss(relaxation="logistic", steepness=4.0)
    np.testing.assert_allclose(loss.call(y_true, y_pred), reference.call(y_true, y_pred), rtol=1e-6)
    with pytest.raises(ValueError, match="relaxation"):
        loss.get_config()


@pytest.mark.parametrize(
    "kwargs,error,argument",
    [
        ({"sorter": "quick_sort"}, ValueError, "sorter"),
        ({"sorter": "neural_sort", "steepness": 3.0}, ValueError, "steepness"),
        ({"sorter": "diff_sort", "tau": 1.0}, ValueError, "tau"),
        ({"sorter": "neural_sort", "tau": 0.0}, ValueError, "tau"),
        ({"sorter": "soft_sort", "power": -1.0}, ValueError, "power"),
        ({"steepness": -2.0}, ValueError, "steepness"),
        ({"art_lambda": -0.5}, ValueError, "art_lambda"),
        ({"relaxation": "sigmoid"}, ValueError, "relaxation"),
        ({"relaxation": 3}, TypeError, "relaxation"),
        ({"network": "bubble"}, ValueError, "network"),
        ({"ties": "random"}, ValueError, "ties"),
        ({"steepness": "high"}, TypeError, "steepness"),
    ],
)
def test_bad_options_raise_naming_the_argument(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        SortingLoss(**kwargs)


def test_bad_shapes_raise_naming_the_argument():
    loss = SortingLoss()
    with pytest.raises(ValueError, match="y_pred"):
        loss.call(np.ones((2, 1), np.float32), np.ones((2, 1), np.float32))
    with pytest.raises(ValueError, match="y_true"):
        loss.call(np.ones((2, 4), np.float32), np.ones((2, 5), np.float32))


# objective="positional_ce": the cross-entropy of each position's column of P.


def np_positional_ce(y_true, p, eps=EPS):
    """-(1/n) Σ_j log P[π⁻¹(j), j], π⁻¹(j) = the item at ascending position j.

    Written with the gathered form (not the Q-weighted sum the library
    computes), log p as log(p + eps) - log(1 + eps).
    """
    order = np.argsort(y_true, kind="stable")  # order[j] = π⁻¹(j)
    picked = p[order, np.arange(y_true.size)]
    return -(np.log(picked + eps) - np.log1p(eps)).mean()


def np_positional_loss(y_true, y_pred, reference):
    flat_true = y_true.reshape(-1, y_true.shape[-1]).astype(np.float64)
    flat_pred = y_pred.reshape(-1, y_pred.shape[-1]).astype(np.float64)
    values = [np_positional_ce(t, reference(s)[1]) for t, s in zip(flat_true, flat_pred)]
    return np.asarray(values).reshape(y_true.shape[:-1])


@pytest.mark.parametrize("sorter,options,reference", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_positional_ce_matches_numpy_reference(sorter, options, reference, dtype, rng):
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for shape in [(4, 5), (2, 3, 10)]:
        y_true, y_pred = _batch(rng, shape)
        y_true, y_pred = y_true.astype(dtype), y_pred.astype(dtype)
        loss = SortingLoss(sorter, objective="positional_ce", **options)
        values = loss.call(y_true, y_pred).numpy()
        assert values.shape == shape[:-1] and values.dtype == dtype
        expected = np_positional_loss(y_true, y_pred, reference)
        np.testing.assert_allclose(values, expected, rtol=tol, atol=tol * 1e-2)
        # A different quantity from the default BCE (not a rescaling of it).
        bce = SortingLoss(sorter, **options).call(y_true, y_pred).numpy()
        assert not np.allclose(values, bce, rtol=1e-3)


def test_positional_ce_by_hand_for_two_items():
    # NeuralSort of 2 items, scores s = (0, d), τ = 1. Ascending position 0
    # has logits -s_j - Σ_k |s_j - s_k| = (-d, -2d): item 1 gets σ(-d).
    # Position 1 has logits s_j - Σ_k |s_j - s_k| = (-d, 0): item 0 gets σ(-d).
    # The labels (1, 0) put item 1 first, so both true entries are σ(-d): the
    # scores have the order exactly wrong.
    d = 0.7
    loss = SortingLoss("neural_sort", objective="positional_ce", tau=1.0)
    value = float(loss.call(np.array([[1.0, 0.0]]), np.array([[0.0, d]]))[0])
    _, p = np_neural_sort(np.array([0.0, d]), 1.0)
    np.testing.assert_allclose(p[0, 1], 1 / (1 + np.exp(d)), rtol=1e-12)
    np.testing.assert_allclose(p[1, 0], 1 / (1 + np.exp(d)), rtol=1e-12)
    expected = -np.log(1 / (1 + np.exp(d)) + EPS) + np.log1p(EPS)
    np.testing.assert_allclose(value, expected, rtol=1e-9)


def test_positional_ce_is_zero_at_a_perfect_sort_and_larger_when_reversed(rng):
    y_true = rng.permutation(6).astype(np.float32)[None]
    sharp = SortingLoss("neural_sort", objective="positional_ce", tau=1e-3)
    np.testing.assert_allclose(sharp(y_true, y_true), 0.0, atol=1e-6)
    # Reversed (n even): every position's true item gets mass 0 -> -log(eps).
    expected = -(np.log(EPS) - np.log1p(EPS))
    np.testing.assert_allclose(float(sharp(y_true, -y_true)), expected, rtol=1e-3)


@pytest.mark.parametrize("sorter,options,reference", CASES[2:], ids=IDS[2:])
def test_positional_ce_modes_agree(mode, sorter, options, reference, rng):
    y_true, y_pred = _batch(rng, (3, 7))
    loss = SortingLoss(sorter, objective="positional_ce", **options)
    values = run_in_mode(mode, loss.call, tf.constant(y_true), tf.constant(y_pred))
    np.testing.assert_allclose(values, np_positional_loss(y_true, y_pred, reference),
                               rtol=1e-4)
    np.testing.assert_allclose(values, loss.call(y_true, y_pred).numpy(), rtol=2e-5)


@pytest.mark.parametrize("ties", ["stable", "average"])
@pytest.mark.parametrize("mode_name", ["eager", "xla"])
def test_positional_ce_nan_label_gives_nan_only_for_its_sample(ties, mode_name):
    loss = SortingLoss("soft_sort", ties=ties, objective="positional_ce", reduction=None)
    y_true = tf.constant([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]])
    y_pred = tf.constant([[0.0, 1.0, 2.0]] * 2)
    values = run_in_mode(mode_name, loss.call, y_true, y_pred)
    assert np.isnan(values[0]) and np.isfinite(values[1])


def test_objective_is_serialized_and_old_configs_mean_bce(rng):
    loss = SortingLoss("neural_sort", objective="positional_ce", tau=0.5)
    config = loss.get_config()
    assert config["objective"] == "positional_ce"
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.objective == "positional_ce" and restored.get_config() == config
    y_true, y_pred = _batch(rng, (3, 5))
    np.testing.assert_allclose(restored(y_true, y_pred), loss(y_true, y_pred), rtol=1e-6)
    # A config saved before the option existed has no "objective": BCE.
    old = dict(config)
    del old["objective"]
    assert SortingLoss.from_config(old).objective == "bce"
    assert SortingLoss().get_config()["objective"] == "bce"


@pytest.mark.parametrize("objective", ["Positional_CE", "ce", None, 1])
def test_unknown_objective_raises_naming_it(objective):
    with pytest.raises(ValueError, match="objective"):
        SortingLoss("neural_sort", objective=objective)


