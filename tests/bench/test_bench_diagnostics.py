"""Sorting diagnostics (keras_newton.bench.diagnostics) against NumPy computations."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_newton.bench import diagnostics, training
from keras_newton.bench.sort_task import sort_task
from keras_newton.bench.task import Variant, build_variant_model
from keras_newton.losses import SortingLoss


class QuadraticLoss(keras.losses.Loss):
    """Per-set ½ (y - t)ᵀ A (y - t): gradient A (y - t), Hessian A (known in closed form)."""

    def __init__(self, matrix):
        super().__init__(name="quadratic")
        self.matrix = tf.constant(matrix, tf.float32)

    def call(self, y_true, y_pred):
        residual = y_pred - y_true
        return 0.5 * tf.einsum("bi,ij,bj->b", residual, self.matrix, residual)


def _numpy_reference(matrix, y_true, y_pred, newton, damping, damping_ratio=None,
                     damping_radius=None):
    g = (y_pred - y_true) @ matrix.T
    norms = np.linalg.norm(g, axis=1)
    n = matrix.shape[0]
    basis = diagnostics.order_basis(n)
    if newton == "fisher":
        curvature = g.T @ g / len(g)
    else:  # hessian and element-wise: every set's Hessian is A.
        curvature = matrix
    if damping_ratio is not None:  # adaptive: λ = max(r · RMS eigenvalue of M, max‖g‖/Δ)
        damping = max(damping_ratio * np.sqrt(np.mean(np.linalg.eigvalsh(curvature) ** 2)),
                      norms.max() / damping_radius)
    eig = np.linalg.eigvalsh(basis.T @ curvature @ basis)
    # The library's default treats negative curvature by |eigenvalue| (saddle-free).
    w, v = np.linalg.eigh(curvature)
    step = g @ (v @ np.diag(1.0 / (np.abs(w) + damping)) @ v.T).T
    return {"grad_norm_spread": norms.max() / np.median(norms),
            "grad_norm_median": np.median(norms),
            "score_std": np.mean(np.std(y_pred, axis=1)),
            "curvature_eig_min": eig.min() + damping, "curvature_eig_max": eig.max() + damping,
            "newton_cosine": np.sum(step * g) / (np.linalg.norm(step) * np.linalg.norm(g)),
            "step_scale": np.linalg.norm(step) / np.linalg.norm(g), "damping": damping}


@pytest.mark.parametrize("newton", ["hessian", "fisher", "elementwise_hessian"])
def test_diagnostics_equal_numpy_on_a_quadratic_loss(newton):
    rng = np.random.default_rng(0)
    n = 4
    root = rng.normal(size=(n, n))
    matrix = root @ root.T + 0.5 * np.eye(n)  # SPD: the step is a plain damped solve
    y_true = rng.normal(size=(7, n))
    y_pred = rng.normal(size=(7, n)) * np.linspace(0.5, 3.0, 7)[:, None]
    damping = 0.3
    got = diagnostics.sorting_diagnostics(QuadraticLoss(matrix), y_true, y_pred, newton, damping)
    want = _numpy_reference(matrix, y_true, y_pred, newton, damping)
    assert set(got) == set(diagnostics.DIAGNOSTICS)
    for name in diagnostics.DIAGNOSTICS:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-4, err_msg=name)


@pytest.mark.parametrize("newton", ["hessian", "fisher"])
@pytest.mark.parametrize("radius", [1e6, 0.5])  # the ratio sets λ; the radius does
def test_adaptive_damping_diagnostics_use_the_ratio_times_the_curvature_scale(newton, radius):
    rng = np.random.default_rng(2)
    root = rng.normal(size=(4, 4))
    matrix = root @ root.T + 0.5 * np.eye(4)
    y_true, y_pred = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    got = diagnostics.sorting_diagnostics(QuadraticLoss(matrix), y_true, y_pred, newton, 0.0,
                                          damping_ratio=0.05, damping_radius=radius)
    want = _numpy_reference(matrix, y_true, y_pred, newton, 0.0, damping_ratio=0.05,
                            damping_radius=radius)
    for name in ("damping", "curvature_eig_min", "newton_cosine", "step_scale"):
        np.testing.assert_allclose(got[name], want[name], rtol=2e-4, err_msg=name)


def test_baseline_has_no_curvature_diagnostics_and_ranking_values_are_finite():
    rng = np.random.default_rng(1)
    loss = SortingLoss("neural_sort")
    y_true, y_pred = rng.normal(size=(16, 5)), rng.normal(size=(16, 5))
    baseline = diagnostics.sorting_diagnostics(loss, y_true, y_pred, "none", 0.01)
    assert math.isnan(baseline["newton_cosine"]) and math.isnan(baseline["curvature_eig_min"])
    assert baseline["grad_norm_spread"] >= 1.0
    for newton in ("hessian", "fisher", "elementwise_hessian"):
        values = diagnostics.sorting_diagnostics(loss, y_true, y_pred, newton, 0.01)
        assert all(math.isfinite(v) for v in values.values()), (newton, values)
        assert -1.0 <= values["newton_cosine"] <= 1.0 + 1e-6
        assert values["curvature_eig_min"] <= values["curvature_eig_max"]


def test_order_basis_is_orthonormal_and_orthogonal_to_ones():
    basis = diagnostics.order_basis(6)
    assert basis.shape == (6, 5)
    np.testing.assert_allclose(basis.T @ basis, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(basis.T @ np.ones(6), 0.0, atol=1e-12)


def test_every_evaluation_logs_the_diagnostics(tmp_path):
    task = sort_task({"n": 3, "steps": 4, "eval_every": 2, "batch_size": 3, "eval_sets": 6,
                      "scorer": "mlp"})
    variant = Variant("h", newton="hessian", damping=0.1)
    record = training.run_training(
        task, variant, 0, str(tmp_path), verbose=0, jit_compile=False,
        diagnostics=diagnostics.make_monitor(task, variant, num_sets=4))
    assert [h["step"] for h in record["history"]] == [2, 4]
    for entry in record["history"]:
        for name in diagnostics.DIAGNOSTICS:
            assert math.isfinite(entry[f"diag_{name}"]), name


@pytest.mark.parametrize("newton", ["none", "hessian", "fisher", "elementwise_hessian"])
def test_monitor_equals_eager_diagnostics(newton):
    # The monitor traces its derivatives (Hessians only where the variant
    # needs them) and its Newton target once; values must not change.
    task = sort_task({"n": 4, "steps": 2, "eval_every": 2, "batch_size": 3, "eval_sets": 8,
                      "scorer": "mlp"})
    variant = Variant("v", newton=newton, damping=0.05)
    model = build_variant_model(task, variant, 0, jit_compile=False)
    monitor = diagnostics.make_monitor(task, variant, num_sets=6)
    first, again = monitor(model), monitor(model)
    x, y = task.eval_sets["validation"]
    scores = model.predict(x[:6], verbose=0)
    expected = diagnostics.sorting_diagnostics(task.loss, y[:6], scores, newton, 0.05)
    for values in (first, again):
        assert set(values) == set(expected)
        for name, value in expected.items():
            if math.isnan(value):
                assert math.isnan(values[name]), name
            else:
                np.testing.assert_allclose(values[name], value, rtol=1e-5, err_msg=name)


def test_per_set_derivatives_without_hessians():
    rng = np.random.default_rng(3)
    loss = SortingLoss("soft_sort")
    y_true = tf.constant(rng.normal(size=(5, 4)), tf.float32)
    y_pred = tf.constant(rng.normal(size=(5, 4)), tf.float32)
    gradients, hessians = diagnostics.per_set_derivatives(loss, y_true, y_pred)
    only, none = diagnostics.per_set_derivatives(loss, y_true, y_pred, hessians=False)
    assert none is None and hessians.shape == (5, 4, 4)
    np.testing.assert_allclose(only.numpy(), gradients.numpy(), rtol=1e-6)
