"""Fuzz: the sorters and ``SortingLoss`` over dtypes, sizes, values and options.

Properties: a ValueError / TypeError naming the argument, or outputs of the
documented shape and dtype, finite in every row whose scores are finite
(down to the float limit), with rows independent of each other; eager and
XLA agree; ``SortingLoss`` is NaN exactly for samples with a NaN label or
non-finite score, and finite otherwise.
"""

import numpy as np
import tensorflow as tf
from hypothesis import strategies as st

from keras_newton.losses import SortingLoss
from keras_newton.sorting import diff_sort, neural_sort, soft_sort

from fuzz_strategies import (BATCH_SIZES, DTYPES, CompiledCache, as_tensor,
                             assert_error_names_argument, assert_modes_agree, finite_rows,
                             fuzz_tests, value_arrays)

SORTERS = {"neural_sort": neural_sort, "soft_sort": soft_sort, "diff_sort": diff_sort}
ARGUMENTS = ("scores", "x", "tau", "power", "steepness", "art_lambda", "relaxation",
             "network", "sorter", "ties")


@st.composite
def sorter_options(draw):
    name = draw(st.sampled_from(sorted(SORTERS)))
    if name == "diff_sort":
        options = dict(
            network=draw(st.sampled_from(["odd_even", "bitonic", "nope"])),
            relaxation=draw(st.sampled_from(
                ["logistic", "logistic_phi", "gaussian", "reciprocal", "cauchy", "optimal"])),
            steepness=draw(st.sampled_from([0.0, 1.0, 10.0, 1e4])))
    else:
        options = dict(tau=draw(st.sampled_from([-1.0, 1e-6, 0.1, 1.0])))
        if name == "soft_sort":
            options["power"] = draw(st.sampled_from([1.0, 2.0]))
    return name, options


@st.composite
def score_batches(draw):
    n = draw(st.sampled_from([1, 2, 3, 5]))
    batch = draw(BATCH_SIZES)
    dtype = draw(st.sampled_from(DTYPES))
    return draw(value_arrays((batch, n), dtype)), dtype


def _sort(name, options, scores):
    try:
        return SORTERS[name](scores, **options), None
    except (ValueError, TypeError) as error:
        return None, error


def check_sorter_outputs(sorter, scores_and_dtype):
    name, options = sorter
    values, dtype = scores_and_dtype
    scores = as_tensor(values, dtype)
    result, error = _sort(name, options, scores)
    if error is not None:
        assert_error_names_argument(error, ARGUMENTS)
        return
    sorted_scores, permutation = result
    batch, n = values.shape
    assert sorted_scores.shape == (batch, n) and permutation.shape == (batch, n, n)
    assert sorted_scores.dtype == dtype and permutation.dtype == dtype
    finite = finite_rows(tf.cast(scores, tf.float64).numpy())
    p = tf.cast(permutation, tf.float64).numpy()
    assert np.isfinite(p[finite]).all()
    assert np.isfinite(tf.cast(sorted_scores, tf.float64).numpy()[finite]).all()
    # Each finite row alone gives the same result as inside the batch.
    for row in np.flatnonzero(finite)[:1]:
        alone = tf.cast(SORTERS[name](scores[row:row + 1], **options)[1], tf.float64)
        np.testing.assert_allclose(p[row], alone.numpy()[0], rtol=1e-6, atol=1e-6)


test_sorter_outputs, test_sorter_outputs_slow = fuzz_tests(
    check_sorter_outputs, sorter_options(), score_batches(), default_examples=20)

_COMPILED = CompiledCache()


def check_sorter_eager_and_xla_agree(sorter, scores_and_dtype):
    name, options = sorter
    values, dtype = scores_and_dtype
    scores = as_tensor(values, dtype)
    eager, eager_error = _sort(name, options, scores)
    try:
        key = (name, tuple(sorted(options.items())))
        xla = _COMPILED.get(key, lambda: lambda s: SORTERS[name](s, **options))(scores)
        xla_error = None
    except (ValueError, TypeError) as error:
        xla, xla_error = None, error
    assert (eager_error is None) == (xla_error is None), (eager_error, xla_error)
    if eager_error is None:
        assert_modes_agree(tf.cast(eager[1], tf.float64), tf.cast(xla[1], tf.float64), dtype)


test_sorter_eager_and_xla_agree, test_sorter_eager_and_xla_agree_slow = fuzz_tests(
    check_sorter_eager_and_xla_agree, sorter_options(), score_batches(), default_examples=8)


def check_sorting_loss_nan_exactly_where_inputs_are(sorter, ties, labels, scores):
    name, options = sorter
    try:
        loss = SortingLoss(name, ties=ties, reduction=None, **options)
    except (ValueError, TypeError) as error:
        assert_error_names_argument(error, ARGUMENTS)
        return
    n = min(labels.shape[1], scores.shape[1])
    rows = min(len(labels), len(scores))
    labels, scores = labels[:rows, :n], scores[:rows, :n].astype(np.float32)
    try:
        values = loss(labels, scores).numpy()
    except (ValueError, TypeError) as error:
        assert_error_names_argument(error, ARGUMENTS)
        return
    assert values.shape == (rows,)
    finite = finite_rows(scores) & ~np.isnan(labels).any(axis=1)
    assert np.isfinite(values[finite]).all()
    assert np.isnan(values[np.isnan(labels).any(axis=1)]).all()


test_sorting_loss_nan_exactly_where_inputs_are, test_sorting_loss_nan_slow = fuzz_tests(
    check_sorting_loss_nan_exactly_where_inputs_are, sorter_options(),
    st.sampled_from(["stable", "average"]),
    st.sampled_from([2, 4]).flatmap(lambda n: value_arrays((3, n), tf.float32)),
    st.sampled_from([2, 4]).flatmap(lambda n: value_arrays((3, n), tf.float32)),
    default_examples=12)
