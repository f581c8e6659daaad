"""NeuralSort and SoftSort against NumPy references written from the formulas."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from conftest import run_in_mode
from keras_newton.sorting import diff_sort, neural_sort, soft_sort


def np_neural_sort(s, tau):
    """Grover et al. (2019), descending form applied to -s, then transposed."""
    t = -s.astype(np.float64)
    n = t.shape[-1]
    spread = np.abs(t[:, None] - t[None, :]).sum(axis=1)
    p_hat = np.stack(
        [special.softmax(((n + 1 - 2 * r) * t - spread) / tau) for r in range(1, n + 1)]
    )
    perm = p_hat.T
    return s @ perm, perm


def np_soft_sort(s, tau, power=1.0):
    """Prillo & Eisenschlos (2020) with ascending anchors, then transposed."""
    s = s.astype(np.float64)
    anchors = np.sort(s)
    p_hat = special.softmax(-np.abs(anchors[:, None] - s[None, :]) ** power / tau, axis=1)
    perm = p_hat.T
    return s @ perm, perm


CASES = [
    (neural_sort, np_neural_sort, {"tau": 0.7}),
    (soft_sort, np_soft_sort, {"tau": 0.3}),
    (soft_sort, np_soft_sort, {"tau": 0.3, "power": 2.0}),
    (soft_sort, np_soft_sort, {"tau": 0.5, "power": 1.5}),
]
IDS = ["neural", "soft_p1", "soft_p2", "soft_p1.5"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sorter,reference,options", CASES, ids=IDS)
def test_matches_numpy_reference(sorter, reference, options, dtype, rng):
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for n in (2, 3, 5, 10, 33):
        x = rng.normal(size=(3, n)).astype(dtype)
        sorted_x, perm = sorter(tf.constant(x), **options)
        assert sorted_x.dtype == perm.dtype == tf.as_dtype(dtype)
        for row in range(3):
            ref_sorted, ref_perm = reference(x[row], **options)
            np.testing.assert_allclose(perm[row], ref_perm, rtol=tol, atol=tol)
            np.testing.assert_allclose(sorted_x[row], ref_sorted, rtol=tol, atol=tol)


@pytest.mark.parametrize("sorter,reference,options", CASES[:2], ids=IDS[:2])
def test_modes_and_batch_dims(mode, sorter, reference, options, rng):
    x = rng.normal(size=(2, 3, 6)).astype(np.float32)
    sorted_x, perm = run_in_mode(mode, lambda t: sorter(t, **options), tf.constant(x))
    assert sorted_x.shape == (2, 3, 6) and perm.shape == (2, 3, 6, 6)
    for index in np.ndindex(2, 3):
        ref_sorted, ref_perm = reference(x[index], **options)
        np.testing.assert_allclose(perm[index], ref_perm, atol=2e-5)
        np.testing.assert_allclose(sorted_x[index], ref_sorted, atol=2e-5)


@pytest.mark.parametrize("sorter", [neural_sort, soft_sort])
def test_columns_are_distributions_and_sorted_is_x_times_p(sorter, rng):
    x = rng.normal(size=(5, 9))
    sorted_x, perm = sorter(x, tau=1.3)
    perm = perm.numpy()
    assert (perm >= 0).all()
    np.testing.assert_allclose(perm.sum(axis=-2), 1.0, atol=1e-12)  # positions
    assert np.abs(perm.sum(axis=-1) - 1.0).max() > 1e-3  # rows are not (unimodal)
    np.testing.assert_allclose(np.einsum("...i,...ij->...j", x, perm), sorted_x, atol=1e-12)


@pytest.mark.parametrize("sorter", [neural_sort, soft_sort])
def test_zero_temperature_limit_is_the_exact_permutation(sorter, rng):
    n = 12
    x = rng.permutation(n).astype(np.float64) + rng.uniform(0, 0.5, size=n)
    exact = np.eye(n)[np.argsort(np.argsort(x))]
    _, perm = sorter(x[None], tau=1e-4)
    np.testing.assert_allclose(perm[0], exact, atol=1e-9)
    _, soft = sorter(x[None], tau=5.0)
    assert np.abs(soft[0] - exact).max() > 0.1


def test_same_convention_as_sorting_networks(rng):
    # All sorters agree in the hard limit, so callers can swap them.
    x = rng.normal(size=(4, 7))
    _, reference = diff_sort(x, steepness=1e9)
    for sorter in (neural_sort, soft_sort):
        _, perm = sorter(x, tau=1e-5)
        np.testing.assert_allclose(perm, reference, atol=1e-6)


def test_bad_arguments():
    x = tf.zeros([2, 4])
    for sorter in (neural_sort, soft_sort):
        with pytest.raises(ValueError, match="tau"):
            sorter(x, tau=0.0)
        with pytest.raises(ValueError, match="tau"):
            sorter(x, tau=-1.0)
        with pytest.raises(ValueError, match="at least 2"):
            sorter(tf.zeros([2, 1]), tau=1.0)
        with pytest.raises(ValueError, match="at least 2"):
            sorter(tf.zeros([2, 0]), tau=1.0)
        with pytest.raises(TypeError, match="floating"):
            sorter(tf.zeros([2, 3], tf.int64), tau=1.0)
        with pytest.raises(TypeError, match="tau"):
            sorter(x, tau="hot")
    with pytest.raises(ValueError, match="power"):
        soft_sort(x, tau=1.0, power=0.0)
