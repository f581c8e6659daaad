"""Fuzz: ``SmoothedLoss`` and ``FenchelYoungLoss`` over options, shapes and values.

Properties: a ValueError / TypeError naming the argument, or per-sample
losses ``[N]`` finite for samples with finite inputs, and Newton targets
(through their curvature protocol) of the outputs' shape, finite there too.
"""

import numpy as np
import tensorflow as tf
from hypothesis import strategies as st

import keras_newton as kn
from keras_newton.losses import FenchelYoungLoss, SmoothedLoss
from keras_newton.shortest_path import shortest_path

from fuzz_strategies import (BATCH_SIZES, assert_error_names_argument, finite_rows,
                             fuzz_tests, value_arrays)

ARGUMENTS = ("loss", "algorithm", "smoothing", "num_samples", "sigma", "noise", "seed",
             "solver", "y_true", "y_pred", "curvature")


@st.composite
def smoothing_options(draw):
    return dict(num_samples=draw(st.sampled_from([0, 1, 3])),
                sigma=draw(st.sampled_from([-1.0, 0.1, 1.0])),
                noise=draw(st.sampled_from(["normal", "logistic", "cauchy", "gumbel", "nope"])),
                seed=draw(st.sampled_from([None, 0, -1])))


def _maps(draw_shape):
    return st.tuples(BATCH_SIZES, st.sampled_from([2, 3])).flatmap(
        lambda s: value_arrays((s[0], s[1], s[1]), tf.float32))


def check_smoothed_loss(kind, options, curvature, costs):
    truth = shortest_path(tf.where(np.isfinite(costs), costs, 1.0)).numpy()
    try:
        if kind == "fenchel_young":
            loss = FenchelYoungLoss(reduction=None, **options)
        else:
            loss = SmoothedLoss("hamming", smoothing=kind, reduction=None, **options)
        values = loss(truth, costs).numpy()
        target = kn.newton_target(loss, truth, costs, curvature=curvature, damping=0.1)
    except (ValueError, TypeError) as error:
        assert_error_names_argument(error, ARGUMENTS)
        return
    finite = finite_rows(costs)
    assert values.shape == (len(costs),) and np.isfinite(values[finite]).all()
    assert target.shape == costs.shape and target.dtype == tf.float32
    assert np.isfinite(target.numpy()[finite]).all()


test_smoothed_loss, test_smoothed_loss_slow = fuzz_tests(
    check_smoothed_loss, st.sampled_from(["loss", "algorithm", "fenchel_young"]),
    smoothing_options(), st.sampled_from(["hessian", "fisher", "elementwise_hessian"]),
    _maps(None), default_examples=8)
