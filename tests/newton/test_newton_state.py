"""One entry point and one state: ``newton_target(..., state=step.new_state())``.

The state a spec keeps across calls (the Hessian cache of a refreshed
estimate, the adaptive damping's variables) is one object; ``NewtonLoss``
keeps one; files saved when the two parts were separate load their values.
"""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.newton import AdaptiveDamping, HessianEstimate, NewtonState, NewtonStep
from keras_newton.newton._curvature_cache import CurvatureCache
from keras_newton.newton.adaptive_damping import DampingState

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
sys.path.insert(0, FIXTURES)
from make_state_fixtures import STATE_VALUES  # noqa: E402


def _batch(seed=0, n=6, m=3):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.normal(size=(n, m))), tf.constant(rng.normal(size=(n, m))))


def test_new_state_holds_what_the_spec_needs_and_nothing_else():
    plain = NewtonStep().new_state()
    assert isinstance(plain, NewtonState)
    assert plain.hessian_cache is None and plain.damping_state is None
    both = NewtonStep("hessian", "adaptive", HessianEstimate(refresh_every=3)).new_state()
    assert isinstance(both.hessian_cache, CurvatureCache)
    assert both.hessian_cache.refresh_every == 3
    assert isinstance(both.damping_state, DampingState)
    assert float(both.damping_state.ratio.numpy()) == pytest.approx(AdaptiveDamping().initial)


@pytest.mark.parametrize("step", [
    NewtonStep("hessian", 0.1, HessianEstimate(refresh_every=2)),
    NewtonStep("fisher", "adaptive"),
    NewtonStep("hessian", AdaptiveDamping(initial=0.5), HessianEstimate(refresh_every=3)),
])
def test_the_old_entry_point_warns_and_computes_the_same_targets(step):
    y_true, y_pred = _batch()
    new, old = step.new_state(), step.new_state()
    for call in range(4):  # through refreshes and damping updates
        y = y_pred + 0.1 * call
        got = kn.newton_target(keras.losses.LogCosh(), y_true, y, step, state=new)
        with pytest.warns(DeprecationWarning, match="newton_step_target is deprecated"):
            want = kn.newton.newton_step_target(keras.losses.LogCosh(), y_true, y, step,
                                                old.hessian_cache, old.damping_state)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    if new.damping_state is not None:
        np.testing.assert_array_equal(new.damping_state.ratio.numpy(),
                                      old.damping_state.ratio.numpy())


def test_a_refreshed_estimate_without_its_state_is_refused():
    y_true, y_pred = _batch()
    step = NewtonStep(estimate=HessianEstimate(refresh_every=2))
    with pytest.raises(ValueError, match=r"needs the state of step.new_state\(\)"):
        kn.newton_target("mse", y_true, y_pred, step)
    with pytest.raises(TypeError, match="state must be the NewtonState"):
        kn.newton_target("mse", y_true, y_pred, step, state=step.estimate.new_cache())


def test_newton_loss_keeps_one_state():
    loss = kn.NewtonLoss("mse", NewtonStep("hessian", "adaptive",
                                           HessianEstimate(refresh_every=2)))
    assert isinstance(loss.state, NewtonState)
    assert loss.hessian_cache is loss.state.hessian_cache
    assert loss.damping_state is loss.state.damping_state
    y_true, y_pred = _batch()
    before = _state_values(loss.damping_state)
    loss(y_true, y_pred)
    assert int(loss.state.hessian_cache.step.numpy()) == 1
    # The trust region adapts the ratio or the radius, whichever set λ.
    after = _state_values(loss.damping_state)
    assert (after["ratio"], after["radius"]) != (before["ratio"], before["radius"])


def _state_values(state):
    return {key: float(value.numpy()) for key, value in state.values().items()}


def _saved_and_new(values):
    """The values a file saved before the trust radius holds, and the radius,
    which such a file lacks and so loads at its initial value."""
    saved = {key: value for key, value in values.items() if key in STATE_VALUES}
    return saved, values["radius"]


def test_a_compiled_newton_loss_saved_before_the_one_state_loads_its_variables():
    model = keras.models.load_model(os.path.join(FIXTURES, "adaptive_newton_loss.keras"))
    assert isinstance(model.loss.state, NewtonState)
    saved, radius = _saved_and_new(_state_values(model.loss.state.damping_state))
    assert saved == STATE_VALUES
    assert radius == pytest.approx(AdaptiveDamping().radius)


def test_a_newton_loss_model_saved_before_the_one_state_loads_its_variables(tmp_path):
    path = os.path.join(FIXTURES, "adaptive_newton_model.keras")
    model = keras.models.load_model(path)
    state = model._newton_wrappers[0].state
    saved, radius = _saved_and_new(_state_values(state.damping_state))
    assert saved == STATE_VALUES
    assert radius == pytest.approx(AdaptiveDamping().radius)
    # Saved again now, the file holds the same variables under the same
    # names, and the trust radius beside them.
    again = os.path.join(tmp_path, "again.keras")
    model.save(again)
    old, new = _weight_names(path), _weight_names(again)
    assert set(old) <= set(new)
    assert sorted(os.path.basename(name) for name in set(new) - set(old)) == ["radius"]


def _weight_names(path):
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as raw:
        names = []
        with h5py.File(raw, "r") as weights:
            weights.visititems(lambda name, item: names.append(name)
                               if isinstance(item, h5py.Dataset) else None)
    return sorted(names)
