"""Regression tests for the defects of issue 13 (and those its fuzz suite found).

Each test reproduces one reported case and fails without its fix.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.losses import SmoothedLoss, SortingLoss
from keras_newton.newton import HessianEstimate
from keras_newton.newton._finite_inputs import drop_non_finite_rows
from keras_newton.shortest_path import relaxed_shortest_path, shortest_path
from keras_newton.sorting import diff_sort, neural_sort, permutation_matrix, soft_sort

MODES = ("eager", "function", "xla")


def _in_mode(fn, mode):
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=mode == "xla")


# 1. Exact shortest path with a NaN cost.


@pytest.mark.parametrize("mode", MODES)
def test_exact_shortest_path_nan_map_is_all_nan_and_others_unaffected(mode):
    rng = np.random.default_rng(0)
    costs = rng.uniform(0.1, 5.0, size=(3, 4, 4)).astype("float32")
    costs[1, 2, 1] = np.nan
    paths = _in_mode(shortest_path, mode)(costs).numpy()
    assert np.isnan(paths[1]).all()
    for index in (0, 2):
        np.testing.assert_array_equal(paths[index], shortest_path(costs[index]).numpy())
        assert set(np.unique(paths[index])) == {0.0, 1.0}


@pytest.mark.parametrize("loop", ["for", "while"])
def test_relaxed_shortest_path_nan_or_minus_inf_map_is_nan_only_there(loop):
    rng = np.random.default_rng(1)
    costs = rng.uniform(0.1, 5.0, size=(3, 3, 3)).astype("float32")
    alone = relaxed_shortest_path(costs[[0]], loop=loop, n_iter=6).numpy()
    costs[1, 1, 1] = np.nan
    costs[2, 0, 2] = -np.inf
    paths = relaxed_shortest_path(costs, loop=loop, n_iter=6).numpy()
    assert np.isnan(paths[1]).all() and np.isnan(paths[2]).all()
    np.testing.assert_allclose(paths[0], alone[0], atol=1e-6)


# 2. NaN labels of SortingLoss.


@pytest.mark.parametrize("ties", ["stable", "average"])
def test_sorting_loss_nan_label_gives_nan_sample_loss(ties):
    loss = SortingLoss(ties=ties, reduction=None)
    y_true = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], "float32")
    values = loss(y_true, np.array([[0.0, 1.0, 2.0]] * 2, "float32")).numpy()
    assert np.isnan(values[0]) and np.isfinite(values[1])
    matrix = permutation_matrix(y_true, ties).numpy()
    assert np.isnan(matrix[0]).all()
    np.testing.assert_array_equal(matrix[1], np.eye(3))


def test_sorting_loss_nan_label_takes_no_newton_step():
    y_true = tf.constant([[np.nan, 1.0, 2.0], [2.0, 0.0, 1.0]])
    y_pred = tf.constant([[0.0, 1.0, 2.0], [0.3, 0.1, 0.2]])
    target = kn.newton_target(SortingLoss(), y_true, y_pred, curvature="hessian").numpy()
    np.testing.assert_array_equal(target[0], y_pred[0].numpy())
    assert np.isfinite(target).all() and not np.allclose(target[1], y_pred[1].numpy())


# 3. Empty batches through every newton_target path.


class _Cosh(keras.losses.Loss):
    """A loss with no closed form (autodiff path)."""

    def call(self, y_true, y_pred):
        return tf.reduce_mean(tf.math.log(tf.cosh(y_pred - y_true)), axis=-1)


EMPTY_CASES = [
    (keras.losses.Huber(), kn.NewtonStep("elementwise_hessian")),
    (keras.losses.Huber(), kn.NewtonStep("hessian")),
    (keras.losses.Huber(), kn.NewtonStep("fisher")),
    (_Cosh(), kn.NewtonStep("elementwise_hessian", solver="cg")),
    (_Cosh(), kn.NewtonStep("fisher", 0.1, solver="woodbury")),
    (_Cosh(), kn.NewtonStep("hessian", estimate=HessianEstimate(rank=2))),
    (_Cosh(), kn.NewtonStep("hessian", estimate=HessianEstimate(
        rank=2, products="finite_differences"))),
    (_Cosh(), kn.NewtonStep("hessian", estimate=HessianEstimate(samples=2))),
    ("mse", kn.NewtonStep("elementwise_hessian", derivatives="autodiff")),
    ("mse", kn.NewtonStep("elementwise_hessian", derivatives="closed_form")),
    (SmoothedLoss("mse", algorithm=None, num_samples=2, seed=0),
     kn.NewtonStep("elementwise_hessian", derivatives="protocol")),
]


@pytest.mark.parametrize("mode", MODES + ("dynamic_batch",))
@pytest.mark.parametrize("loss,step", EMPTY_CASES,
                         ids=[f"case{i}" for i in range(len(EMPTY_CASES))])  # stable under xdist
def test_empty_batch_gives_empty_target(loss, step, mode):
    def target(y_true, y_pred):
        return kn.newton_target(loss, y_true, y_pred, step)

    if mode == "dynamic_batch":
        spec = tf.TensorSpec([None, 3])
        fn = tf.function(target, input_signature=[spec, spec])
    else:
        fn = _in_mode(target, mode)
    empty = tf.zeros([0, 3])
    result = fn(empty, empty)
    assert result.shape == (0, 3) and result.dtype == tf.float32


# 3b. Found by the fuzz suite: CG with a batch size unknown at trace time.


def test_cg_solver_traces_with_unknown_batch_size():
    step = kn.NewtonStep("elementwise_hessian", solver="cg")
    spec = tf.TensorSpec([None, 3])
    fn = tf.function(lambda t, y: kn.newton_target(_Cosh(), t, y, step),
                     input_signature=[spec, spec])
    y = tf.constant([[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]])
    expected = kn.newton_target(_Cosh(), tf.zeros_like(y), y,
                                kn.NewtonStep("elementwise_hessian", solver="dense"))
    np.testing.assert_allclose(fn(tf.zeros_like(y), y), expected, rtol=1e-4, atol=1e-5)


def test_sketched_hessian_with_nan_sample_falls_back_in_eager():
    # Eager eigh raised InvalidArgumentError on the NaN sketch; the documented
    # result is the gradient step for the finite samples, no step for NaN ones.
    y = tf.constant([[0.5, -1.0, 2.0], [np.nan, 0.2, 0.3]])
    step = kn.NewtonStep("hessian", estimate=HessianEstimate(rank=2))
    target = kn.newton_target(_Cosh(), tf.zeros_like(y), y, step).numpy()
    assert np.isfinite(target[0]).all()
    np.testing.assert_array_equal(target[1, 1:], y.numpy()[1, 1:])


# 4. float16 with damping 0.


@pytest.mark.parametrize("curvature", ["fisher", "hessian", "elementwise_hessian"])
@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_float16_zero_damping_target_stays_finite(curvature, mode):
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    logits = tf.constant([[20.0, -20.0, 0.0]] * 3, tf.float16)
    labels = tf.constant(np.eye(3), tf.float16)
    step = kn.NewtonStep(curvature, 0.0)
    target = _in_mode(lambda t, y: kn.newton_target(loss, t, y, step), mode)(labels, logits)
    assert target.dtype == tf.float16
    assert np.isfinite(target.numpy()).all()


# 5. Mixed precision with NaN input rows.


def test_drop_non_finite_rows_zeroes_inputs_and_weights():
    x = {"a": tf.constant([[1.0, np.inf], [2.0, 3.0]]), "ids": tf.constant([[1], [2]])}
    clean, weight = drop_non_finite_rows(x, tf.constant([2.0, 3.0]))
    np.testing.assert_array_equal(clean["a"], [[0.0, 0.0], [2.0, 3.0]])
    np.testing.assert_array_equal(clean["ids"], [[1], [2]])
    np.testing.assert_array_equal(weight, [0.0, 3.0])


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_nan_input_rows_never_reach_weights(mixed_float16):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, dtype="float32")(hidden)
    model = kn.NewtonLossModel(inputs, outputs, curvature="fisher", damping=0.1)
    model.compile("adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    rng = np.random.default_rng(0)
    # 200 batches, each with a NaN input row: the loss scale used to halve on
    # every one of them and reach 0 after ~165, and the weights became NaN.
    x = rng.normal(size=(32 * 200, 4)).astype("float32")
    x[::16, 1] = np.nan
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, size=len(x))]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert float(model.optimizer.dynamic_scale.numpy()) >= 1.0


# 6. NeuralSort near the float limit; ±inf rows.


def _neural_sort_reference(scores, tau):
    """NumPy float64 NeuralSort in the library's ascending convention."""
    s = -np.asarray(scores, np.float64)
    n = s.shape[-1]
    spread = np.abs(s[:, None] - s[None, :]).sum(-1)
    coefficient = n + 1 - 2 * np.arange(1, n + 1)
    logits = (coefficient[:, None] * s[None, :] - spread[None, :]) / tau
    logits -= logits.max(-1, keepdims=True)
    p_hat = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return p_hat.T


@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_neural_sort_finite_near_float32_limit(mode):
    scores = tf.constant([[3e38, -3e38, 1e38, 0.0], [0.3, -1.0, 2.0, 0.5]])
    sorted_scores, permutation = _in_mode(neural_sort, mode)(scores)
    assert np.isfinite(sorted_scores.numpy()).all() and np.isfinite(permutation.numpy()).all()
    np.testing.assert_allclose(sorted_scores[0], [-3e38, 0.0, 1e38, 3e38], rtol=1e-5)
    np.testing.assert_allclose(permutation[1], _neural_sort_reference(scores[1], 1.0),
                               atol=1e-6)


@pytest.mark.parametrize("sorter", [neural_sort, soft_sort, diff_sort])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_score_gives_nan_only_in_its_row(sorter, value):
    scores = np.array([[value, 1.0, 2.0], [0.3, -1.0, 2.0]], "float32")
    sorted_scores, permutation = sorter(scores)
    assert np.isnan(permutation.numpy()[0]).any()
    assert np.isfinite(permutation.numpy()[1]).all()
    np.testing.assert_allclose(sorted_scores[1], sorter(scores[1:])[0][0], atol=1e-6)


# SmoothedLoss's shape error names the caller's shapes.


def test_smoothed_loss_shape_error_names_callers_shapes():
    loss = SmoothedLoss(num_samples=3, seed=0)
    with pytest.raises(ValueError, match=r"y_true of shape \(2, 4, 3\) and y_pred of "
                                         r"shape \(2, 4, 4\).*3 stacked noisy copies"):
        loss(tf.zeros([2, 4, 3]), tf.zeros([2, 4, 4]))
