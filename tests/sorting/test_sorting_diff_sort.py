"""diff_sort against a NumPy reference written from the formulas, plus invariants."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special

from conftest import run_in_mode
from keras_newton.sorting import MONOTONIC_RELAXATIONS, RELAXATIONS, diff_sort

SIZES = (2, 3, 5, 10, 33)
NETWORK_NAMES = ("odd_even", "bitonic")


def np_alpha(a, b, relaxation, beta, art_lambda):
    v = beta * (b - a)
    if relaxation == "logistic":
        return special.expit(v)
    if relaxation == "logistic_phi":
        return special.expit(v / (np.abs(a - b) + 1e-10) ** art_lambda)
    if relaxation == "gaussian":
        return special.ndtr(v)
    if relaxation == "reciprocal":
        return 0.5 * (v / (2 + np.abs(v)) + 1)
    if relaxation == "cauchy":
        return np.arctan(v) / np.pi + 0.5
    assert relaxation == "optimal"
    with np.errstate(divide="ignore"):
        tail = np.sign(v) * (0.25 - 1 / (16 * np.abs(v)))
    return np.clip(v, -0.25, 0.25) + 0.5 + np.where(np.abs(v) > 0.25, tail, 0.0)


def np_layers(network, num_wires):
    """Comparator layers: (min wire, max wire); bitonic by Batcher's stages."""
    if network == "odd_even":
        return [
            [(i, i + 1) for i in range(k % 2, num_wires - 1, 2)]
            for k in range(num_wires)
        ]
    layers, block = [], 2
    while block <= num_wires:
        span = block // 2
        while span:
            layer = []
            for start in range(0, num_wires, 2 * span):
                for i in range(start, start + span):
                    up = (i // block) % 2 == 0
                    layer.append((i, i + span) if up else (i + span, i))
            layers.append(layer)
            span //= 2
        block *= 2
    return layers


def np_diff_sort(x, network, relaxation, beta=10.0, art_lambda=0.25):
    """Reference on one vector: real values on the last wires, -inf padding
    on the first ones, comparisons involving padding resolved exactly."""
    n = x.shape[-1]
    num_wires = n if network == "odd_even" else 1 << (n - 1).bit_length()
    pad = num_wires - n
    values = np.concatenate([np.full(pad, -np.inf), x.astype(np.float64)])
    perm = np.eye(num_wires)
    for layer in np_layers(network, num_wires):
        for lo, hi in layer:
            a, b = values[lo], values[hi]
            if np.isinf(a) or np.isinf(b):
                alpha = 0.0 if np.isinf(b) and not np.isinf(a) else 1.0
                low, high = (a, b) if alpha == 1.0 else (b, a)
            else:
                alpha = np_alpha(a, b, relaxation, beta, art_lambda)
                low = alpha * a + (1 - alpha) * b
                high = (1 - alpha) * a + alpha * b
            col_a, col_b = perm[:, lo].copy(), perm[:, hi].copy()
            perm[:, lo] = alpha * col_a + (1 - alpha) * col_b
            perm[:, hi] = (1 - alpha) * col_a + alpha * col_b
            values[lo], values[hi] = low, high
    return values[pad:], perm[pad:, pad:]


def np_diff_sort_skipping_padding(x, relaxation, beta):
    """The reference package's bitonic rule: real values on the last wires,
    every comparator that touches a padding wire is skipped."""
    n = x.shape[-1]
    num_wires = 1 << (n - 1).bit_length()
    pad = num_wires - n
    values = np.concatenate([np.zeros(pad), x.astype(np.float64)])
    perm = np.eye(num_wires)
    for layer in np_layers("bitonic", num_wires):
        for lo, hi in layer:
            if lo < pad or hi < pad:
                continue
            a, b = values[lo], values[hi]
            alpha = np_alpha(a, b, relaxation, beta, 0.25)
            values[lo], values[hi] = alpha * a + (1 - alpha) * b, (1 - alpha) * a + alpha * b
            col_a, col_b = perm[:, lo].copy(), perm[:, hi].copy()
            perm[:, lo] = alpha * col_a + (1 - alpha) * col_b
            perm[:, hi] = (1 - alpha) * col_a + alpha * col_b
    return values[pad:], perm[pad:, pad:]


def _inputs(rng, shape, dtype):
    return rng.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("network", NETWORK_NAMES)
@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_matches_numpy_reference_all_sizes(relaxation, network, dtype, rng):
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for n in SIZES:
        x = _inputs(rng, (2, n), dtype)
        # 7.3 and 0.3 are not float32 numbers: float64 must not round them.
        sorted_x, perm = diff_sort(tf.constant(x), network, relaxation, 7.3, 0.3)
        assert sorted_x.dtype == perm.dtype == tf.as_dtype(dtype)
        for row in range(2):
            ref_sorted, ref_perm = np_diff_sort(x[row], network, relaxation, 7.3, 0.3)
            np.testing.assert_allclose(sorted_x[row], ref_sorted, rtol=tol, atol=tol)
            np.testing.assert_allclose(perm[row], ref_perm, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("network", NETWORK_NAMES)
@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_modes_match_reference(mode, relaxation, network, dtype, rng):
    # n cycles through sizes (bitonic padding for 5 and 10) to keep the grid small.
    n = (3, 5, 10, 33)[(RELAXATIONS.index(relaxation) + len(network)) % 4]
    tol = 2e-4 if dtype == np.float32 else 1e-10
    x = _inputs(rng, (3, n), dtype)
    fn = lambda t: diff_sort(t, network=network, relaxation=relaxation, steepness=7.0)
    sorted_x, perm = run_in_mode(mode, fn, tf.constant(x))
    assert sorted_x.dtype == perm.dtype == dtype
    for row in range(3):
        ref_sorted, ref_perm = np_diff_sort(x[row], network, relaxation, beta=7.0)
        np.testing.assert_allclose(sorted_x[row], ref_sorted, rtol=tol, atol=tol)
        np.testing.assert_allclose(perm[row], ref_perm, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [3, 5, 6, 7, 9, 10, 12, 13, 20, 33])
def test_bitonic_padding_agrees_with_reference_package_rule(n, rng):
    # For these n the reference's skipped comparators are exactly what -inf
    # padding does, so published steepness values carry over unchanged.
    x = rng.normal(size=(3, n))
    sorted_x, perm = diff_sort(x, "bitonic", "logistic", steepness=10.0)
    for row in range(3):
        ref_sorted, ref_perm = np_diff_sort_skipping_padding(x[row], "logistic", 10.0)
        np.testing.assert_allclose(sorted_x[row], ref_sorted, atol=1e-12)
        np.testing.assert_allclose(perm[row], ref_perm, atol=1e-12)


def test_bitonic_sorts_where_skipping_padding_does_not(rng):
    # n = 22: skipping the padding comparators is not a sorting network (some
    # 0-1 inputs stay unsorted), exact -inf padding still sorts every input.
    n = 22
    found = False
    for _ in range(200):
        x = (rng.random(n) < rng.random()).astype(np.float64)
        skipped, _ = np_diff_sort_skipping_padding(x, "logistic", 1e9)
        found |= bool(np.any(np.diff(skipped) < -0.5))
        sorted_x, _ = diff_sort(x[None], "bitonic", "logistic", steepness=1e9)
        np.testing.assert_allclose(sorted_x[0], np.sort(x), atol=1e-9)
    assert found


@pytest.mark.parametrize("network", NETWORK_NAMES)
def test_doubly_stochastic_and_sorted_equals_x_times_p(network, rng):
    for relaxation in RELAXATIONS:
        for n in (3, 10, 33):
            x = _inputs(rng, (4, n), np.float64)
            sorted_x, perm = diff_sort(x, network, relaxation, steepness=3.0)
            perm = perm.numpy()
            assert (perm >= 0).all()
            np.testing.assert_allclose(perm.sum(axis=-1), 1.0, atol=1e-12)
            np.testing.assert_allclose(perm.sum(axis=-2), 1.0, atol=1e-12)
            np.testing.assert_allclose(
                np.einsum("...i,...ij->...j", x, perm), sorted_x, atol=1e-12
            )


@pytest.mark.parametrize("network", NETWORK_NAMES)
def test_infinite_steepness_gives_exact_permutation(network, rng):
    n = 10
    x = rng.permutation(n).astype(np.float64) + rng.uniform(0, 0.5, size=n)
    exact = np.eye(n)[np.argsort(np.argsort(x))]  # [i, rank_i]
    for relaxation in RELAXATIONS:
        sorted_x, perm = diff_sort(x[None], network, relaxation, steepness=1e9)
        np.testing.assert_allclose(perm[0], exact, atol=1e-6)
        np.testing.assert_allclose(sorted_x[0], np.sort(x), atol=1e-6)
        # A soft network is far from exact, so the test above can fail.
        _, soft = diff_sort(x[None], network, relaxation, steepness=0.5)
        assert np.abs(soft[0] - exact).max() > 0.05


# One network in the default suite; both with -m slow (each takes a minute).
@pytest.mark.parametrize("network", [
    pytest.param(name, marks=pytest.mark.slow) if name != "odd_even" else name
    for name in NETWORK_NAMES])
def test_monotonic_relaxations_have_nonnegative_jacobian(network, rng):
    # Monotonic sorting networks (Petersen et al., 2022): increasing any input
    # never decreases any relaxed sorted output. The logistic one is not.
    # n = 10: the bitonic network also runs through its padding.
    x = tf.constant(rng.normal(size=(100, 10)) * rng.uniform(0.05, 3, size=(100, 1)))

    for relaxation in RELAXATIONS:
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            sorted_x, _ = diff_sort(x, network, relaxation, steepness=10.0)
            outputs = tf.unstack(sorted_x, axis=-1)
        # Samples are independent: d(sum over batch of output j)/dx is row j of
        # every sample's Jacobian.
        jacobian = np.stack([tape.gradient(out, x) for out in outputs], axis=-2)
        del tape
        if relaxation in MONOTONIC_RELAXATIONS:
            assert jacobian.min() > -1e-9, relaxation
        elif relaxation in ("logistic", "gaussian"):
            assert jacobian.min() < -1e-2, relaxation


def test_leading_batch_dims_and_tfp_distribution(rng):
    x = _inputs(rng, (2, 3, 4, 6), np.float64)
    sorted_x, perm = diff_sort(x, "bitonic", "cauchy", steepness=4.0)
    assert sorted_x.shape == (2, 3, 4, 6) and perm.shape == (2, 3, 4, 6, 6)
    flat_sorted, flat_perm = diff_sort(x.reshape(24, 6), "bitonic", "cauchy", 4.0)
    np.testing.assert_allclose(sorted_x.numpy().reshape(24, 6), flat_sorted)
    np.testing.assert_allclose(perm.numpy().reshape(24, 6, 6), flat_perm)
    # A standard Cauchy instance is the "cauchy" relaxation; a Laplace works too.
    cauchy = tfp.distributions.Cauchy(np.float64(0.0), np.float64(1.0))
    via_instance, _ = diff_sort(x, "bitonic", cauchy, steepness=4.0)
    np.testing.assert_allclose(via_instance, sorted_x, atol=1e-12)
    laplace = tfp.distributions.Laplace(np.float64(0.0), np.float64(1.0))
    _, perm_laplace = diff_sort(x, "odd_even", laplace, steepness=4.0)
    np.testing.assert_allclose(perm_laplace.numpy().sum(-1), 1.0, atol=1e-12)


def test_half_precision_is_computed_in_float32(rng):
    x = _inputs(rng, (2, 7), np.float32)
    sorted_16, perm_16 = diff_sort(tf.constant(x, tf.float16), "odd_even", "logistic_phi")
    sorted_32, perm_32 = diff_sort(x.astype(np.float16).astype(np.float32), "odd_even", "logistic_phi")
    assert sorted_16.dtype == perm_16.dtype == tf.float16
    np.testing.assert_allclose(perm_16.numpy().astype(np.float32), perm_32, atol=1e-3)


def test_bad_arguments():
    x = tf.zeros([3, 4])
    with pytest.raises(ValueError, match="at least 2"):
        diff_sort(tf.zeros([3, 1]))
    with pytest.raises(ValueError, match="at least 2"):
        diff_sort(tf.zeros([0]))
    with pytest.raises(ValueError, match="rank"):
        diff_sort(tf.constant(1.0))
    with pytest.raises(TypeError, match="floating"):
        diff_sort(tf.zeros([3, 4], tf.int32))
    with pytest.raises(ValueError, match="network"):
        diff_sort(x, network="bubble")
    with pytest.raises(ValueError, match="relaxation"):
        diff_sort(x, relaxation="sigmoid")
    with pytest.raises(TypeError, match="relaxation"):
        diff_sort(x, relaxation=3)
    with pytest.raises(ValueError, match="steepness"):
        diff_sort(x, steepness=-1.0)
    with pytest.raises(ValueError, match="art_lambda"):
        diff_sort(x, relaxation="logistic_phi", art_lambda=-0.5)
    with pytest.raises(TypeError, match="dtype"):
        diff_sort(x, relaxation=tfp.distributions.Normal(np.float64(0), np.float64(1)))
    with pytest.raises(ValueError, match="scalar"):
        diff_sort(x, relaxation=tfp.distributions.Normal([0.0, 0.0], 1.0))
    unknown_n = tf.function(lambda t: diff_sort(t)).get_concrete_function
    with pytest.raises(ValueError, match="statically"):
        unknown_n(tf.TensorSpec([None, None], tf.float32))
