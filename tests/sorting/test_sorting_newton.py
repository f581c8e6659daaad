"""NewtonLoss(SortingLoss(...)): targets vs finite differences, XLA training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from conftest import run_in_mode
from keras_newton.losses.sorting_loss import SortingLoss

# n = 4 items: the bitonic network needs 3 layers (odd-even: 4), which keeps
# the compile time of the Hessian through the network short.
SORTERS = {
    "diff_sort": {"network": "bitonic", "relaxation": "logistic", "steepness": 3.0},
    "neural_sort": {"tau": 0.7},
    "soft_sort": {"tau": 0.5, "power": 2.0},
}


def fd_derivatives(loss, y_true, y_pred, h=1e-4):
    """Per-sample gradients [N, n] and Hessians [N, n, n] by central differences.

    Uses only values of ``loss.call`` (float64), never autodiff: every
    perturbed copy of the batch is evaluated in one call.
    """
    batch, n = y_pred.shape
    eye = np.eye(n) * h

    def values(shifts):  # shifts [K, n] -> per-sample losses [K, N]
        shifted = y_pred[None] + shifts[:, None, :]
        tiled = np.broadcast_to(y_true, shifted.shape)
        out = loss.call(tf.constant(tiled.reshape(-1, n)), tf.constant(shifted.reshape(-1, n)))
        return out.numpy().reshape(len(shifts), batch)

    plus, minus = values(eye), values(-eye)
    gradients = ((plus - minus) / (2 * h)).T
    corners = np.stack(
        [sj * eye[j] + sk * eye[k] for j in range(n) for k in range(n)
         for sj, sk in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    )
    f = values(corners).reshape(n, n, 4, batch)
    hessians = (f[:, :, 0] - f[:, :, 1] - f[:, :, 2] + f[:, :, 3]) / (4 * h * h)
    return gradients, np.transpose(hessians, (2, 0, 1))


def np_newton_target(y_pred, gradients, matrix, damping):
    """z* = y - (M + λI)^-1 g with the saddle-free (|eigenvalue|) safeguard."""
    matrix = 0.5 * (matrix + matrix.T)
    e, v = np.linalg.eigh(matrix)
    damped = np.maximum(np.abs(e) + damping, 1e-6 * np.abs(e).max())
    return y_pred - (gradients @ v / damped) @ v.T


# Every mode for the sorting network; XLA (the strictest) for the others, to
# keep compile time down: the sorters themselves are tested in all modes.
TARGET_CASES = [
    (sorter, curvature, mode)
    for sorter in sorted(SORTERS)
    for curvature in ("hessian", "fisher")
    for mode in (("eager", "function", "xla") if sorter == "diff_sort" else ("xla",))
]


@pytest.mark.parametrize("sorter,curvature,mode", TARGET_CASES)
def test_newton_target_matches_finite_differences(sorter, curvature, mode, rng):
    n, batch, damping = 4, 4, 0.05
    loss = SortingLoss(sorter, **SORTERS[sorter])
    y_true = np.stack([rng.permutation(n) for _ in range(batch)]).astype(np.float64)
    y_pred = rng.normal(size=(batch, n))
    gradients, hessians = fd_derivatives(loss, y_true, y_pred)
    if curvature == "hessian":
        matrix = hessians.mean(0)
        # The loss sees score differences only: the Hessian annihilates 1.
        np.testing.assert_allclose(matrix @ np.ones(n), 0.0, atol=1e-5)
    else:
        matrix = gradients.T @ gradients / batch
    expected = np_newton_target(y_pred, gradients, matrix, damping)
    target = run_in_mode(
        mode,
        lambda t, p: kn.newton_target(loss, t, p, curvature=curvature, damping=damping),
        tf.constant(y_true),
        tf.constant(y_pred),
    )
    # atol: the loss is flat along (1, ..., 1), where a 1e-8 component of a
    # gradient (FD or autodiff round-off) is amplified by 1/damping.
    np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(target - y_pred).max() > 1e-3  # a real step was taken


def test_newton_target_float32_close_to_float64(rng):
    loss = SortingLoss("neural_sort", tau=0.5)
    y_true = np.stack([rng.permutation(6) for _ in range(8)]).astype(np.float32)
    y_pred = rng.normal(size=(8, 6))
    single = kn.newton_target(loss, y_true, y_pred.astype(np.float32), damping=0.05)
    double = kn.newton_target(loss, y_true.astype(np.float64), y_pred, damping=0.05)
    assert single.dtype == tf.float32
    np.testing.assert_allclose(single, double, rtol=1e-3, atol=1e-3)


def _ranking_data(rng, samples=32, n=4, features=3):
    x = rng.normal(size=(samples, n, features)).astype(np.float32)
    y = x @ np.array([1.0, -0.5, 0.25], np.float32)  # learnable true values
    return x, y.astype(np.float32)


# The Hessian through the sorting network (over a minute of XLA compile) runs
# with -m slow; its Newton target is checked in every mode below.
@pytest.mark.parametrize("sorter,curvature", [
    pytest.param(sorter, curvature, marks=pytest.mark.slow)
    if (sorter, curvature) == ("diff_sort", "hessian") else (sorter, curvature)
    for sorter in sorted(SORTERS) for curvature in ("hessian", "fisher")])
def test_fit_with_jit_compile_trains(sorter, curvature, rng):
    x, y = _ranking_data(rng)
    keras.utils.set_random_seed(0)
    scorer = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Dense(1), keras.layers.Reshape((x.shape[1],))]
    )
    sorting = SortingLoss(sorter, **SORTERS[sorter])
    scorer.compile(
        keras.optimizers.SGD(0.5),
        loss=kn.NewtonLoss(sorting, curvature=curvature, damping=0.1),
        jit_compile=True,
    )
    before = float(sorting(y, scorer.predict(x, verbose=0)))
    history = scorer.fit(x, y, batch_size=8, epochs=3, verbose=0).history
    after = float(sorting(y, scorer.predict(x, verbose=0)))
    assert np.isfinite(history["loss"]).all()
    assert after < before, (before, after)


@pytest.mark.parametrize("curvature", ["hessian", "fisher"])
@pytest.mark.parametrize("sorter", ["neural_sort", "soft_sort"])
def test_positional_ce_newton_target_matches_finite_differences(sorter, curvature, rng):
    # SortingLoss has no closed-form curvature: NewtonLoss takes the autodiff
    # path for either objective; its target must match finite differences.
    n, batch, damping = 4, 4, 0.05
    loss = SortingLoss(sorter, objective="positional_ce", **SORTERS[sorter])
    y_true = np.stack([rng.permutation(n) for _ in range(batch)]).astype(np.float64)
    y_pred = rng.normal(size=(batch, n))
    gradients, hessians = fd_derivatives(loss, y_true, y_pred)
    matrix = hessians.mean(0) if curvature == "hessian" else gradients.T @ gradients / batch
    expected = np_newton_target(y_pred, gradients, matrix, damping)
    target = run_in_mode(
        "xla",
        lambda t, p: kn.newton_target(loss, t, p, curvature=curvature, damping=damping),
        tf.constant(y_true),
        tf.constant(y_pred),
    )
    np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(target - y_pred).max() > 1e-3


@pytest.mark.parametrize("curvature", ["hessian", "fisher"])
def test_newton_loss_of_positional_ce_trains_and_round_trips(curvature, rng, tmp_path):
    x, y = _ranking_data(rng)
    keras.utils.set_random_seed(0)
    scorer = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Dense(1), keras.layers.Reshape((x.shape[1],))]
    )
    sorting = SortingLoss("soft_sort", objective="positional_ce", tau=0.5)
    newton = kn.NewtonLoss(sorting, curvature=curvature, damping=0.1)
    scorer.compile(keras.optimizers.SGD(0.5), loss=newton, jit_compile=True)
    before = float(sorting(y, scorer.predict(x, verbose=0)))
    history = scorer.fit(x, y, batch_size=8, epochs=3, verbose=0).history
    after = float(sorting(y, scorer.predict(x, verbose=0)))
    assert np.isfinite(history["loss"]).all()
    assert after < before, (before, after)
    restored = kn.NewtonLoss.from_config(newton.get_config())
    assert restored.loss.objective == "positional_ce"
