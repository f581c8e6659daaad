"""Fuzz: adaptive damping's trust region on saturated softmax losses.

Property: for random confidently-wrong logits (up to 1e4, float32, float16
or bfloat16), every curvature and solver, over 50 XLA-compiled steps of
gradient descent on the Newton loss, no sample's Newton step
``s_i = y_i - z*_i`` is longer than the trust radius the step used, and the
logits (the "weights" here) stay finite.
"""

import keras
import numpy as np
import tensorflow as tf
from hypothesis import strategies as st

import keras_newton as kn
from keras_newton.newton.target import newton_step_target

from fuzz_strategies import fuzz_tests

STEPS = 50
CCE = keras.losses.CategoricalCrossentropy(from_logits=True)
# (curvature, solver): every solver an adaptive rule can drive.
PATHS = [("hessian", "dense"), ("fisher", "dense"), ("fisher", "woodbury"),
         ("elementwise_hessian", "dense"), ("elementwise_hessian", "cg")]


@st.composite
def saturated_problems(draw):
    dtype = draw(st.sampled_from([tf.float32, tf.float16, tf.bfloat16]))
    logit = draw(st.floats(5.0, 1e4 if dtype != tf.float16 else 3e3))
    rows, classes = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    path = draw(st.sampled_from(PATHS))
    seed = draw(st.integers(0, 2**16))
    return dtype, logit, rows, classes, path, seed


def check_steps_stay_within_the_radius(problem):
    dtype, logit, rows, classes, (curvature, solver), seed = problem
    data = np.random.default_rng(seed)
    labels = data.integers(1, classes, size=rows)
    y_true = tf.constant(np.eye(classes, dtype="float32")[labels])
    start = data.normal(size=(rows, classes)).astype("float32")
    start[:, 0] += logit  # class 0 is never the label: confidently wrong
    logits = tf.Variable(tf.cast(start, dtype))
    step = kn.NewtonStep(curvature, damping="adaptive", solver=solver)
    state = step.damping.new_state()

    @tf.function(jit_compile=True)
    def one_step():
        radius = state.radius.read_value()
        target = newton_step_target(CCE, y_true, logits, step, None, state)
        moved = tf.cast(logits, tf.float32) - tf.cast(target, tf.float32)
        # Gradient descent on ½‖z* - y‖² (what a Newton loss trains), rate ½.
        logits.assign(tf.cast(tf.cast(logits, tf.float32) - 0.5 * moved, dtype))
        largest = tf.reduce_max(tf.abs(tf.cast(target, tf.float32)))
        return tf.norm(moved, axis=1), radius, largest

    for _ in range(STEPS):
        norms, radius, largest = one_step()
        # The step is formed in float32 and the target rounded to the logits'
        # dtype: allow half a unit in the last place of every entry.
        spacing = np.sqrt(classes) * float(largest) * _epsilon(dtype) / 2
        assert np.all(norms.numpy() <= float(radius) * (1 + 1e-5) + spacing), (
            norms.numpy(), float(radius))
        assert np.isfinite(logits.numpy().astype("float32")).all()


def _epsilon(dtype):
    return {tf.float32: 2.0**-23, tf.float16: 2.0**-10, tf.bfloat16: 2.0**-7}[dtype]


test_steps_stay_within_the_radius, test_steps_stay_within_the_radius_slow = fuzz_tests(
    check_steps_stay_within_the_radius, saturated_problems(), default_examples=6,
    slow_examples=60)
