"""Fuzz: exact and relaxed shortest paths and ``ShortestPathLoss``.

Properties: a ValueError / TypeError naming the argument, or a path of the
costs' shape and dtype; exact paths are 0/1 masks from the top-left to the
bottom-right cell for finite maps and all-NaN for maps with a NaN cost;
relaxed paths lie in [0, 1] for finite maps; every map gives the same result
alone as in the batch; eager and XLA agree.
"""

import numpy as np
import tensorflow as tf
from hypothesis import strategies as st

from keras_newton.losses import ShortestPathLoss
from keras_newton.shortest_path import relaxed_shortest_path, shortest_path

from fuzz_strategies import (BATCH_SIZES, CompiledCache, assert_error_names_argument,
                             assert_modes_agree, finite_rows, fuzz_tests, value_arrays)

ARGUMENTS = ("costs", "beta", "n_iter", "loop", "t_conorm", "p", "max_iter", "epsilon",
             "loss", "max_iterations")


@st.composite
def cost_maps(draw):
    shape = (draw(BATCH_SIZES), draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([2, 3])))
    dtype = draw(st.sampled_from([tf.float32, tf.float64]))
    return draw(value_arrays(shape, dtype)), dtype


@st.composite
def relaxed_options(draw):
    t_conorm = draw(st.sampled_from(["probabilistic", "hamacher", "yager_1", "nope"]))
    return dict(beta=draw(st.sampled_from([-1.0, 1.0, 10.0])),
                n_iter=draw(st.sampled_from([None, 0, 3])),
                loop=draw(st.sampled_from(["for", "while"])),
                t_conorm=t_conorm,
                p=draw(st.sampled_from([None, 0.5])) if t_conorm == "hamacher" else None)


def check_exact_path(maps):
    values, dtype = maps
    paths = shortest_path(tf.constant(values, dtype)).numpy()
    assert paths.shape == values.shape and paths.dtype == values.dtype
    nan_maps = np.isnan(values).any(axis=(1, 2))
    assert np.isnan(paths[nan_maps]).all()
    good = paths[~nan_maps]
    assert set(np.unique(good)) <= {0.0, 1.0}
    if good.size:
        assert (good[:, 0, 0] == 1).all() and (good[:, -1, -1] == 1).all()
    for index in range(len(values))[:2]:
        np.testing.assert_array_equal(shortest_path(tf.constant(values[index], dtype)).numpy(),
                                      paths[index])


test_exact_path, test_exact_path_slow = fuzz_tests(check_exact_path, cost_maps(),
                                                   default_examples=6)

_COMPILED = CompiledCache()


def check_exact_eager_and_xla_agree(maps):
    values, dtype = maps
    xla = _COMPILED.get("exact", lambda: shortest_path)(tf.constant(values, dtype))
    assert_modes_agree(shortest_path(tf.constant(values, dtype)), xla, dtype)


test_exact_eager_and_xla_agree, test_exact_eager_and_xla_agree_slow = fuzz_tests(
    check_exact_eager_and_xla_agree, cost_maps(), default_examples=4)


def check_relaxed_path(options, maps):
    values, dtype = maps
    costs = tf.constant(values, dtype)
    try:
        paths = relaxed_shortest_path(costs, **options).numpy()
    except (ValueError, TypeError) as error:
        assert_error_names_argument(error, ARGUMENTS)
        return
    assert paths.shape == values.shape and paths.dtype == values.dtype
    finite = finite_rows(values)
    assert np.isfinite(paths[finite]).all()
    assert ((paths[finite] >= -1e-6) & (paths[finite] <= 1 + 1e-6)).all()
    for index in np.flatnonzero(finite)[:1]:
        alone = relaxed_shortest_path(costs[index:index + 1], **options).numpy()[0]
        # The While loop stops on the whole batch: others differ below epsilon.
        np.testing.assert_allclose(paths[index], alone, atol=1e-4)


test_relaxed_path, test_relaxed_path_slow = fuzz_tests(
    check_relaxed_path, relaxed_options(), cost_maps(), default_examples=6)


def check_shortest_path_loss(loss_name, options, maps):
    values, dtype = maps
    options = {k: v for k, v in options.items() if k != "n_iter" or v}
    try:
        loss = ShortestPathLoss(loss_name, reduction=None, **options)
        costs = tf.constant(values, dtype)
        truth = shortest_path(tf.where(tf.math.is_finite(costs), costs, tf.ones_like(costs)))
        per_sample = loss(truth, costs).numpy()
    except (ValueError, TypeError) as error:
        assert_error_names_argument(error, ARGUMENTS)
        return
    assert per_sample.shape == (len(values),)
    assert np.isfinite(per_sample[finite_rows(values)]).all()


test_shortest_path_loss, test_shortest_path_loss_slow = fuzz_tests(
    check_shortest_path_loss, st.sampled_from(["l1", "l2", "huber"]), relaxed_options(),
    cost_maps(), default_examples=4)
