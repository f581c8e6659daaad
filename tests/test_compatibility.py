"""What was saved or computed before the NewtonStep spec still loads and agrees.

The fixtures in ``tests/fixtures`` were made at commit 204f6a2, before the
Newton core became one spec, by the scripts next to them.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest

import keras_newton as kn
from keras_newton.newton import HessianEstimate, NewtonStep, Solver

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
sys.path.insert(0, FIXTURES)
from reference_cases import _coupled, _data, cases  # noqa: E402

REFERENCE = np.load(os.path.join(FIXTURES, "reference_targets.npz"))
CASES = {case[0]: case for case in cases()}


def test_every_reference_case_has_a_saved_target():
    assert sorted(CASES) == sorted(REFERENCE.files)
    # The saved targets are real steps, so equality below means something.
    for name, (_, _, _, y_pred, _) in CASES.items():
        assert np.abs(REFERENCE[name] - y_pred).max() > 1e-6, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_float64_targets_equal_the_pre_spec_code(name):
    _, make_loss, y_true, y_pred, options = CASES[name]
    loss = make_loss()
    step = NewtonStep.from_options(loss, **options)
    target = kn.newton_target(loss, y_true, y_pred, step)
    np.testing.assert_allclose(np.asarray(target), REFERENCE[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name, step", [
    ("coupled/hessian/samples_rank",
     NewtonStep(damping=0.05, estimate=HessianEstimate(samples=4, rank=2, seed=1))),
    ("coupled/hessian/rank_fd",
     NewtonStep(damping=0.05, estimate=HessianEstimate(rank=3, products="finite_differences"))),
    ("coupled/elementwise_hessian/clip",
     NewtonStep("elementwise_hessian", 0.05, solver=Solver(indefinite="clip"))),
    ("coupled/fisher/woodbury", NewtonStep("fisher", 0.05, solver="woodbury")),
    ("coupled/elementwise/cg", NewtonStep("elementwise_hessian", 2.0, solver=Solver(
        "cg", cg_max_iterations=7, cg_tolerance=1e-9))),
    ("softmax_ce_autodiff/fisher/0.5", NewtonStep("fisher", 0.5, derivatives="autodiff")),
])
def test_specs_written_out_equal_the_pre_spec_code(name, step):
    _, make_loss, y_true, y_pred, _ = CASES[name]
    target = kn.newton_target(make_loss(), y_true, y_pred, step)
    np.testing.assert_allclose(np.asarray(target), REFERENCE[name], rtol=0, atol=1e-12)


def test_shortcuts_equal_the_pre_spec_code():
    _, make_loss, y_true, y_pred, _ = CASES["softmax_ce/fisher/0.5"]
    target = kn.newton_target(make_loss(), y_true, y_pred, curvature="fisher", damping=0.5)
    np.testing.assert_allclose(np.asarray(target), REFERENCE["softmax_ce/fisher/0.5"],
                               rtol=0, atol=1e-12)
    t, y = _data(5)
    assert np.abs(np.asarray(kn.newton_target(_coupled, t, y, "fisher"))
                  - np.asarray(kn.newton_target(_coupled, t, y))).max() > 1e-3


SAVED = np.load(os.path.join(FIXTURES, "saved_models.npz"))


def test_saved_newton_loss_with_a_sketched_hessian_loads_and_predicts_the_same():
    model = keras.models.load_model(os.path.join(FIXTURES, "newton_sorting.keras"))
    # The fixtures were written on another CPU: float32 rounding, not bits.
    np.testing.assert_allclose(model.predict(SAVED["x"], verbose=0),
                               SAVED["scorer_predictions"], rtol=1e-5, atol=1e-6)
    loss = model.loss
    assert isinstance(loss, kn.NewtonLoss)
    assert isinstance(loss.loss, kn.losses.SortingLoss)
    assert loss.step == NewtonStep(
        "hessian", 0.1, solver=Solver(indefinite="clip"),
        estimate=HessianEstimate(samples=6, rank=3, products="finite_differences", seed=2,
                                 refresh_every=2))
    assert loss.hessian_cache.refresh_every == 2
    fresh = kn.NewtonLoss.from_config(loss.get_config())
    value = float(fresh(SAVED["y"], SAVED["scorer_predictions"]))
    # Finite-difference Hessian products amplify the other CPU's rounding.
    np.testing.assert_allclose(value, SAVED["scorer_newton_loss"], rtol=1e-3)
    # Saved again with today's config, it loads to the same spec.
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert again.step == loss.step


def test_saved_newton_loss_model_with_a_sorting_loss_loads_and_evaluates_the_same():
    model = keras.models.load_model(os.path.join(FIXTURES, "newton_model_sorting.keras"))
    assert isinstance(model, kn.NewtonLossModel)
    assert model.step == NewtonStep("fisher", 0.01, solver="dense")
    np.testing.assert_allclose(model.predict(SAVED["x"], verbose=0),
                               SAVED["model_predictions"], rtol=1e-5, atol=1e-6)
    logs = model.evaluate(SAVED["x"], SAVED["y"], batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["loss"], SAVED["model_loss"], rtol=1e-6)
    np.testing.assert_allclose(logs["newton_loss"], SAVED["model_newton_loss"], rtol=1e-6)
    model.fit(SAVED["x"], SAVED["y"], batch_size=8, epochs=1, verbose=0)


OLD = json.load(open(os.path.join(FIXTURES, "old_configs.json")))
EXPECTED_STEPS = {
    "sketch": NewtonStep("hessian", 0.1, solver=Solver(indefinite="clip"), estimate=HessianEstimate(
        samples=6, rank=3, products="finite_differences", seed=2, refresh_every=2)),
    "cg": NewtonStep("elementwise_hessian", 0.5,
                     solver=Solver("cg", cg_max_iterations=5, cg_tolerance=1e-7)),
    "woodbury": NewtonStep("fisher", 0.05, solver="woodbury"),
    "autodiff": NewtonStep("fisher", 0.2, solver="dense", derivatives="autodiff"),
    "defaults": NewtonStep(),
}


@pytest.mark.parametrize("label", sorted(EXPECTED_STEPS))
def test_old_configs_deserialize_into_the_spec_and_compute_the_same(label):
    config = OLD["configs"][label]
    assert "hessian_rank" in config["config"] and "step" not in config["config"]
    loss = keras.saving.deserialize_keras_object(config)
    assert loss.step == EXPECTED_STEPS[label]
    value = float(loss(np.array(OLD["targets"]), np.array(OLD["scores"])))
    # Written on another CPU; a Newton solve at small λ (and finite-difference
    # products) amplifies float32 rounding to a few 1e-5 relative.
    np.testing.assert_allclose(value, OLD["values"][label], rtol=1e-4)


def test_old_newton_loss_model_config_deserializes():
    inputs = keras.Input((3,))
    model = kn.NewtonLossModel(inputs, keras.layers.Dense(2)(inputs), curvature="fisher")
    config = model.get_config()
    del config["step"]
    config.update(curvature="hessian", damping=0.3, indefinite="clip", solver="dense",
                  hessian_samples=2, hessian_rank=None, hessian_seed=0,
                  hessian_refresh_every=4, hessian_products="autodiff")
    restored = kn.NewtonLossModel.from_config(config)
    assert restored.step == NewtonStep(
        "hessian", 0.3, solver=Solver("dense", "clip"),
        estimate=HessianEstimate(samples=2, refresh_every=4))
