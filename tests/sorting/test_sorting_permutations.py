"""Ground-truth ranks and permutation matrices, including ties."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.sorting import permutation_matrix, stable_ranks


def np_stable_permutation(values):
    order = np.argsort(values, kind="stable")  # position j holds input order[j]
    perm = np.zeros((values.size, values.size))
    perm[order, np.arange(values.size)] = 1.0
    return perm


def np_average_permutation(values):
    """Mean over all permutation matrices that sort ``values`` (brute force)."""
    import itertools

    n = values.size
    total, count = np.zeros((n, n)), 0
    for order in itertools.permutations(range(n)):
        if np.all(np.diff(values[list(order)]) >= 0):
            perm = np.zeros((n, n))
            perm[list(order), np.arange(n)] = 1.0
            total += perm
            count += 1
    return total / count


def test_stable_ranks_hand_computed():
    values = tf.constant([[2.0, 1.0, 2.0, 0.0, 1.0]])
    np.testing.assert_array_equal(stable_ranks(values), [[3, 1, 4, 0, 2]])


def test_stable_permutation_matches_stable_argsort(mode, rng):
    values = rng.integers(0, 4, size=(3, 5, 8)).astype(np.float32)  # many ties
    perm = run_in_mode(mode, permutation_matrix, tf.constant(values))
    for index in np.ndindex(3, 5):
        np.testing.assert_array_equal(perm[index], np_stable_permutation(values[index]))
        sorted_values = values[index] @ perm[index]
        np.testing.assert_array_equal(sorted_values, np.sort(values[index]))


def test_average_ties_are_the_mean_of_consistent_permutations(mode, rng):
    values = rng.integers(0, 3, size=(6, 6)).astype(np.float64)
    perm = run_in_mode(
        mode, lambda v: permutation_matrix(v, ties="average", dtype=tf.float64), values
    )
    for row in range(6):
        np.testing.assert_allclose(perm[row], np_average_permutation(values[row]))
    np.testing.assert_allclose(perm.sum(axis=-1), 1.0)
    np.testing.assert_allclose(perm.sum(axis=-2), 1.0)


def test_without_ties_both_modes_agree_and_integer_ranks_work(rng):
    values = np.stack([rng.permutation(7) for _ in range(4)]).astype(np.int32)
    stable = permutation_matrix(values)
    average = permutation_matrix(values, ties="average")
    np.testing.assert_array_equal(stable, average)
    np.testing.assert_array_equal(stable.numpy().argmax(-1), values)  # rank = value
    assert stable.dtype == tf.float32


def test_bad_arguments():
    with pytest.raises(ValueError, match="ties"):
        permutation_matrix(tf.zeros([3]), ties="random")
    with pytest.raises(ValueError, match="static last axis"):
        permutation_matrix(tf.constant(1.0))
