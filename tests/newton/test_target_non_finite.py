"""Non-finite samples: left out of the curvature, no step for them, the others unchanged."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from conftest import run_in_mode


def test_non_finite_inputs_give_finite_or_unchanged_targets(mode):
    y = tf.constant([[0.5, -0.5], [np.nan, 1.0], [np.inf, 0.0], [0.1, 0.2]], tf.float32)
    t = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], tf.float32)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    for curvature in kn.CURVATURES:
        z = run_in_mode(mode, lambda a, b: kn.newton_target(ce, a, b, curvature=curvature), t, y)
        finite_rows = np.isfinite(y.numpy()).all(1)
        assert np.isfinite(z[finite_rows]).all()
        # The Newton loss sends no NaN back to the outputs.
        with tf.GradientTape() as tape:
            tape.watch(y)
            value = kn.NewtonLoss(ce, curvature=curvature)(t, y)
        assert np.isfinite(tape.gradient(value, y).numpy()).all()


def _smooth_l1(y_true, y_pred):  # no closed form: nested tapes
    return tf.reduce_mean(tf.sqrt(1.0 + tf.square(y_pred - y_true)), axis=-1)


NON_FINITE_LOSSES = {
    "closed_form_ce": lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
    "autodiff": lambda: _smooth_l1,
}


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("loss_name", sorted(NON_FINITE_LOSSES))
@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_a_non_finite_sample_leaves_the_other_samples_newton_steps_unchanged(
    loss_name, curvature, mode, rng
):
    """One NaN output row: the rest get exactly the z* of the batch without it."""
    y = rng.normal(size=(5, 3)).astype("float32")
    t = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1]]
    poisoned = y.copy()
    poisoned[2] = [np.nan, 0.3, -0.1]
    keep = [0, 1, 3, 4]

    def target(a, b):
        loss = NON_FINITE_LOSSES[loss_name]()
        return kn.newton_target(loss, a, b, curvature=curvature, damping=0.1)

    z = run_in_mode(mode, target, tf.constant(t), tf.constant(poisoned))
    without = run_in_mode(mode, target, tf.constant(t[keep]), tf.constant(y[keep]))
    np.testing.assert_allclose(z[keep], without, rtol=1e-5, atol=1e-6)
    # The poisoned sample takes no step.
    np.testing.assert_array_equal(z[2], poisoned[2])
    # Its neighbours did move (a plain gradient step would differ from this).
    assert np.abs(without - y[keep]).max() > 1e-2


@pytest.mark.parametrize(
    "make_step",
    [lambda samples: kn.NewtonStep("fisher", 0.1, solver="woodbury"),
     lambda samples: kn.NewtonStep(damping=0.1, estimate=kn.newton.HessianEstimate(samples)),
     lambda samples: kn.NewtonStep("elementwise_hessian", 0.1, solver="cg")],
    ids=["woodbury", "hessian_samples", "cg"],
)
def test_non_finite_labels_are_left_out_of_matrix_free_and_subsampled_curvature(make_step, rng):
    """A NaN label (finite output) gives that sample no step, the rest as without it."""
    y = rng.normal(size=(5, 3))
    t = rng.normal(size=(5, 3))
    poisoned = t.copy()
    poisoned[1, 0] = np.nan
    keep = [0, 2, 3, 4]
    # With one of the first 4 samples left out, the subsample has 3 usable ones.
    z = kn.newton_target(_smooth_l1, tf.constant(poisoned), tf.constant(y), make_step(4))
    without = kn.newton_target(_smooth_l1, tf.constant(t[keep]), tf.constant(y[keep]),
                               make_step(3))
    np.testing.assert_allclose(z.numpy()[keep], without, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(z.numpy()[1], y[1])


def test_a_sample_with_a_non_finite_hessian_alone_takes_no_step():
    """Per-sample Hessians are screened too: NaN curvature, finite gradient."""

    class NaNHessianLoss:
        def __call__(self, y_true, y_pred):
            return 0.5 * tf.reduce_sum(tf.square(y_pred), axis=-1)

        def per_sample_derivatives(self, y_true, y_pred, hessian):
            eye = tf.eye(2, batch_shape=[3], dtype=y_pred.dtype)
            nan_first = tf.constant([np.nan, 1.0, 1.0], y_pred.dtype)[:, None, None]
            return y_pred, eye * nan_first

    y = tf.constant([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], tf.float64)
    for curvature in ("hessian", "elementwise_hessian"):
        z = kn.newton_target(NaNHessianLoss(), tf.zeros_like(y), y, curvature=curvature, damping=0.0)
        np.testing.assert_array_equal(z[0], y[0])
        np.testing.assert_allclose(z[1:], 0.0, atol=1e-12)  # exact Newton: the minimum


_MIRRORED_SCRIPT = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras_newton as kn

rng = np.random.default_rng(0)
y = rng.normal(size=(6, 3)).astype("float32")
t = np.eye(3, dtype="float32")[[0, 1, 2, 0, 1, 2]]
y[1, 0] = np.nan  # replica 0 holds rows 0-2, replica 1 rows 3-5
keep = [0, 2, 3, 4, 5]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
loss = keras.losses.CategoricalCrossentropy(from_logits=True)
for options in (kn.NewtonStep("hessian", 0.1), kn.NewtonStep("fisher", 0.1),
                kn.NewtonStep("fisher", 0.1, solver="woodbury")):
    rows = lambda array: strategy.experimental_distribute_values_from_function(
        lambda context: array[3 * context.replica_id_in_sync_group:][:3])
    step = tf.function(lambda a, b: kn.newton_target(loss, a, b, options))
    z = np.concatenate(strategy.experimental_local_results(strategy.run(step, (rows(t), rows(y)))))
    single = kn.newton_target(loss, t[keep], y[keep], options).numpy()
    np.testing.assert_allclose(z[keep], single, rtol=1e-5, atol=1e-6, err_msg=str(options))
    assert np.isnan(z[1, 0]) and z[1, 1] == y[1, 1], options
print("mirrored ok")
"""


def test_left_out_samples_weigh_nothing_in_the_cross_replica_curvature():
    """MirroredStrategy (2 CPUs): all-reduced sums and usable-sample counts."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mirrored ok" in result.stdout
