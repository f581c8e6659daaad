"""The NewtonStep spec: construction, checks, serialization, derivative sources, shape."""

import ast
import inspect
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton import FixedDamping, HessianEstimate, NewtonStep, Solver
from keras_newton.newton import _autodiff as autodiff_lib
from keras_newton.newton import target as target_module

PACKAGE = os.path.dirname(os.path.abspath(kn.__file__))

FULL = NewtonStep(
    curvature="hessian", damping=FixedDamping(0.25),
    estimate=HessianEstimate(samples=8, rank=3, products="finite_differences", seed=4,
                             refresh_every=5),
    solver=Solver("dense", indefinite="clip", cg_max_iterations=9, cg_tolerance=1e-3),
    derivatives="autodiff")


def test_config_round_trips_through_json_and_keras_serialization():
    config = json.loads(json.dumps(FULL.get_config()))
    assert NewtonStep.from_config(config) == FULL
    assert config["estimate"]["rank"] == 3 and config["solver"]["indefinite"] == "clip"
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(FULL)))
    assert serialized["registered_name"] == "keras_newton>NewtonStep"
    assert keras.saving.deserialize_keras_object(serialized) == FULL
    assert NewtonStep.from_config(config) != NewtonStep.from_config(
        dict(config, derivatives="auto"))


def test_defaults_and_numbers_read_as_the_paper():
    step = NewtonStep()
    assert (step.curvature, step.damping, step.estimate.exact, step.solver.method,
            step.derivatives) == ("hessian", FixedDamping(1e-3), True, "auto", "auto")
    assert NewtonStep("fisher", np.float32(0.5)).damping.value() == 0.5
    assert NewtonStep(solver="cg", curvature="elementwise_hessian").solver == Solver("cg")


def test_shortcuts_build_the_same_spec():
    loss = kn.NewtonLoss("mse", curvature="hessian", damping=1e-3)
    assert loss.step == NewtonStep("hessian", 1e-3)
    assert kn.NewtonLoss("mse", "fisher").step == NewtonStep("fisher")
    inputs = keras.Input((3,))
    model = kn.NewtonLossModel(inputs, keras.layers.Dense(2)(inputs), curvature="fisher",
                               damping=1e-2)
    assert model.step == NewtonStep("fisher", 1e-2)
    assert kn.NewtonLoss("mse", FULL).step is FULL


def test_a_spec_and_its_shortcuts_together_are_an_error():
    with pytest.raises(ValueError, match="inside the NewtonStep"):
        kn.NewtonLoss("mse", NewtonStep(), damping=0.1)
    with pytest.raises(ValueError, match="curvature given twice"):
        kn.newton_target("mse", tf.zeros([2, 2]), tf.zeros([2, 2]), "fisher", curvature="hessian")
    with pytest.raises(TypeError, match="NewtonStep"):
        kn.NewtonLoss("mse", 0.1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(curvature="fisher", estimate=HessianEstimate(rank=2)), "curvature='hessian'"),
    (dict(curvature="hessian", solver="woodbury"), "curvature='fisher'"),
    (dict(derivatives="numeric"), "derivatives"),
    (dict(solver="qr"), "solver"),
])
def test_spec_checks_what_it_can_when_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NewtonStep(**kwargs)


class _ScaledProtocolLoss(keras.losses.Loss):
    """½‖y‖² per sample, whose protocol reports twice the true derivatives."""

    def call(self, y_true, y_pred):
        return 0.5 * tf.reduce_sum(tf.square(y_pred - y_true), -1)

    def per_sample_derivatives(self, y_true, y_pred, hessian):
        m = y_pred.shape[-1]
        eye = tf.eye(m, batch_shape=[tf.shape(y_pred)[0]], dtype=y_pred.dtype)
        return 2.0 * (y_pred - y_true), (2.0 * eye if hessian else None)


def test_derivative_sources_are_what_they_say(rng, monkeypatch):
    t = tf.constant(rng.normal(size=(4, 3)))
    y = tf.constant(rng.normal(size=(4, 3)))
    loss, lam = _ScaledProtocolLoss(), 0.5

    def target(source):
        return kn.newton_target(loss, t, y, NewtonStep("fisher", lam, derivatives=source)).numpy()

    # Fisher step of gradients G: (GᵀG/N + λI)^{-1} g_i, for the true and the doubled G.
    def expected(scale):
        g = scale * (y.numpy() - t.numpy())
        return y.numpy() - np.linalg.solve(g.T @ g / 4 + lam * np.eye(3), g.T).T

    np.testing.assert_allclose(target("auto"), expected(2.0), rtol=1e-10)
    np.testing.assert_allclose(target("protocol"), expected(2.0), rtol=1e-10)
    np.testing.assert_allclose(target("autodiff"), expected(1.0), rtol=1e-10)
    with pytest.raises(ValueError, match="per_sample_derivatives"):
        kn.NewtonLoss("mse", NewtonStep(derivatives="protocol"))
    with pytest.raises(ValueError, match="no closed form"):
        kn.newton_target(lambda a, b: tf.reduce_sum(b**2, -1), t, y,
                         NewtonStep(derivatives="closed_form"))
    # A forced closed form never touches autodiff.
    monkeypatch.setattr(autodiff_lib, "autodiff_derivatives", None)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    onehot = tf.one_hot([0, 1, 2, 0], 3, dtype=tf.float64)
    closed = kn.newton_target(ce, onehot, y, NewtonStep(derivatives="closed_form"))
    assert np.abs(closed.numpy() - y.numpy()).max() > 1e-3


def test_old_options_map_into_the_spec():
    assert NewtonStep.from_options(
        curvature="hessian", damping=0.25, indefinite="clip", use_closed_form=False,
        solver="dense", cg_max_iterations=9, cg_tolerance=1e-3, hessian_samples=8,
        hessian_rank=3, hessian_seed=4, hessian_refresh_every=5,
        hessian_products="finite_differences") == FULL
    # A loss with the curvature protocol kept it when closed forms were off.
    assert NewtonStep.from_options(_ScaledProtocolLoss(), curvature="fisher",
                                   use_closed_form=False).derivatives == "protocol"
    with pytest.raises(TypeError, match="hessian_ranks"):
        NewtonStep.from_options(hessian_ranks=2)


def _own_parameters(function, keras_ones=("self", "name", "reduction", "dtype")):
    return [p.name for p in inspect.signature(function).parameters.values()
            if p.name not in keras_ones and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def test_entry_points_take_few_parameters_of_their_own():
    assert _own_parameters(kn.NewtonLoss.__init__) == ["loss", "step", "curvature", "damping"]
    assert _own_parameters(kn.NewtonLossModel.__init__) == ["step", "curvature", "damping"]
    # loss, y_true, y_pred, step, the two shortcuts, and the one state: the
    # entry point of earlier versions that took the state in two parts is a
    # deprecated alias now.
    assert _own_parameters(kn.newton_target) == [
        "loss", "y_true", "y_pred", "step", "curvature", "damping", "state"]


def _body_lines(function):
    node = ast.parse(inspect.getsource(function)).body[0]
    body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
    return body[-1].end_lineno - body[0].lineno + 1


def test_eq_3a_reads_in_one_screen():
    assert _body_lines(target_module.newton_target) <= 60


# The private helpers of the core that sibling packages may use (the losses
# wrap a loss the way the core does); everything else they take from
# keras_newton.newton's public names.
SHARED_HELPERS = ("keras_newton.newton._autodiff", "keras_newton.newton._derivatives",
                  "keras_newton.newton._protocol")


def test_core_modules_are_short_and_siblings_use_only_its_public_names():
    core = os.path.join(PACKAGE, "newton")
    for name in os.listdir(core):
        if name.endswith(".py"):
            with open(os.path.join(core, name)) as f:
                assert len(f.readlines()) <= 400, name
    for sibling in ("sorting", "shortest_path", "smoothing", "losses", "metrics"):
        for root, _, files in os.walk(os.path.join(PACKAGE, sibling)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(root, name)) as f:
                        found = _core_internals_imported(f.read())
                    assert set(found) <= set(SHARED_HELPERS), (sibling, name, found)


def _core_internals_imported(source):
    """Modules below ``keras_newton.newton`` that ``source`` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
            if node.module == "keras_newton.newton":
                modules += [f"keras_newton.newton.{alias.name}" for alias in node.names
                            if alias.name.startswith("_")]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [module for module in modules if module.startswith("keras_newton.newton.")]
    return found


def test_the_import_check_finds_core_internals():
    assert _core_internals_imported("from keras_newton.newton.autodiff import x") == [
        "keras_newton.newton.autodiff"]
    assert _core_internals_imported("import keras_newton.newton.spec as s") == [
        "keras_newton.newton.spec"]
    assert _core_internals_imported("from keras_newton.newton import _sketch") == [
        "keras_newton.newton._sketch"]
    assert not _core_internals_imported("from keras_newton.newton import NewtonStep")
