"""First and second derivatives of the sorters against finite differences."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.sorting import RELAXATIONS, diff_sort, neural_sort, soft_sort

SORTERS = [
    (diff_sort, dict(network=network, relaxation=relaxation, steepness=2.0))
    for relaxation in RELAXATIONS
    for network in ("odd_even", "bitonic")
] + [
    (neural_sort, dict(tau=0.8)),
    (soft_sort, dict(tau=0.8)),
    (soft_sort, dict(tau=0.8, power=2.0)),
]
IDS = [f"{r}-{n}" for r in RELAXATIONS for n in ("odd_even", "bitonic")] + [
    "neural",
    "soft",
    "soft_p2",
]


def _objective(sorter, options, weights_sorted, weights_perm):
    """A scalar that touches every output: sum(w1 * sorted) + sum(w2 * P^2)."""

    def objective(x):
        sorted_x, perm = sorter(x, **options)
        return tf.reduce_sum(weights_sorted * sorted_x) + tf.reduce_sum(
            weights_perm * tf.square(perm)
        )

    return objective


def _gradient_fn(objective):
    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = objective(x)
        return tape.gradient(value, x)

    return gradient


def _spread_inputs(rng, n):
    # Gaps of at least 0.1 keep finite differences away from the kinks of
    # |a - b| (logistic_phi, NeuralSort) and |v| = 1/4 (optimal).
    return (rng.permutation(n) * 0.4 + rng.uniform(-0.1, 0.1, size=n))[None]


def _bitonic_but_one_slow(sorters, ids):
    # The bitonic network shares its comparators' relaxations with odd-even:
    # one relaxation checks it by default, the others run with -m slow.
    return [pytest.param(*case, id=name,
                         marks=[pytest.mark.slow] if name.endswith("-bitonic")
                         and name != "logistic-bitonic" else [])
            for case, name in zip(sorters, ids)]


@pytest.mark.parametrize("sorter,options", _bitonic_but_one_slow(SORTERS, IDS))
def test_gradient_and_hessian_match_finite_differences(sorter, options, rng):
    n = 5
    x = tf.constant(_spread_inputs(rng, n))
    objective = _objective(
        sorter, options, rng.normal(size=(1, n)), rng.normal(size=(1, n, n))
    )
    analytic, numeric = tf.test.compute_gradient(objective, [x], delta=1e-6)
    np.testing.assert_allclose(analytic[0], numeric[0], rtol=1e-5, atol=1e-6)
    gradient = _gradient_fn(objective)
    analytic, numeric = tf.test.compute_gradient(gradient, [x], delta=1e-6)
    hessian = analytic[0]
    np.testing.assert_allclose(hessian, numeric[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-10)
    assert np.abs(hessian).max() > 1e-3  # curvature is really there


@pytest.mark.parametrize("sorter,options", SORTERS, ids=IDS)
def test_second_derivatives_are_finite_at_ties(sorter, options):
    # Exact ties make |a - b| = 0 and v = 0: no inf * 0 may leak into Hessians.
    x = tf.constant([[0.5, 1.0, 1.0, -0.2, 1.0, 0.5]], tf.float32)
    weights = tf.ones([1, 6, 6]) / 36.0
    objective = _objective(sorter, options, tf.ones([1, 6]), weights)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(x)
        gradient = _gradient_fn(objective)(x)
        entries = tf.unstack(gradient[0])
    hessian = tf.stack([outer.gradient(entry, x) for entry in entries])
    del outer
    assert np.isfinite(gradient.numpy()).all()
    assert np.isfinite(hessian.numpy()).all()


# One relaxation in all three modes by default (the relaxations' derivatives
# are checked in eager above); all three with -m slow.
@pytest.mark.parametrize("relaxation", [pytest.param("logistic", marks=pytest.mark.slow),
                                        "logistic_phi",
                                        pytest.param("optimal", marks=pytest.mark.slow)])
def test_hessian_vector_product_in_all_modes(mode, relaxation, rng):
    # Reverse-over-reverse Hessian-vector product vs central differences of
    # the gradient along the same vector.
    n = 6
    x = _spread_inputs(rng, n)
    vector = rng.normal(size=(1, n))
    objective = _objective(
        diff_sort,
        dict(network="bitonic", relaxation=relaxation, steepness=2.0),
        rng.normal(size=(1, n)),
        rng.normal(size=(1, n, n)),
    )
    gradient = _gradient_fn(objective)

    def hvp(point, direction):
        with tf.GradientTape() as tape:
            tape.watch(point)
            directional = tf.reduce_sum(gradient(point) * direction)
        return tape.gradient(directional, point)

    product = run_in_mode(mode, hvp, tf.constant(x), tf.constant(vector))
    step = 1e-5
    plus = gradient(tf.constant(x + step * vector)).numpy()
    minus = gradient(tf.constant(x - step * vector)).numpy()
    np.testing.assert_allclose(product, (plus - minus) / (2 * step), rtol=1e-5, atol=1e-7)
