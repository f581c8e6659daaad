"""Fuzz: ``NewtonLossModel`` keeps its weights finite under non-finite data.

A few hundred XLA-compiled steps, float32 and ``mixed_float16``, with
non-finite rows (NaN, ±inf) drawn by hypothesis in the inputs and labels.
"""

import keras
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_newton as kn

from fuzz_strategies import SPECIAL, fuzz_tests

STEPS, BATCH = 200, 16


@st.composite
def corrupted_data(draw):
    """Inputs and labels with hypothesis-chosen non-finite entries, every row kind."""
    bad_inputs = draw(hnp.arrays(bool, (STEPS * BATCH // 8,)))
    bad_labels = draw(hnp.arrays(bool, (STEPS * BATCH // 8,)))
    special = draw(st.sampled_from(SPECIAL))
    seed = draw(st.integers(0, 2**16))
    data_rng = np.random.default_rng(seed)  # ordinary values only; the faults come from hypothesis
    x = data_rng.normal(size=(STEPS * BATCH, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[data_rng.integers(0, 3, size=len(x))]
    # Every 8th sample may be corrupted: some in every batch of 16.
    x[::8][bad_inputs, 1] = special
    y[::8][bad_labels, 0] = special
    return x, y


def check_weights_stay_finite(policy, curvature, data):
    x, y = data
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="tanh")(inputs)
        outputs = keras.layers.Dense(3, dtype="float32")(hidden)
        model = kn.NewtonLossModel(inputs, outputs, curvature=curvature, damping=0.1)
        model.compile("adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(w).all() for w in model.get_weights())


test_weights_stay_finite, test_weights_stay_finite_slow = fuzz_tests(
    check_weights_stay_finite, st.sampled_from(["float32", "mixed_float16"]),
    st.sampled_from(["hessian", "fisher", "elementwise_hessian"]), corrupted_data(),
    default_examples=2, slow_examples=20)
