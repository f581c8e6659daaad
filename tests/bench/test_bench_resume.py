"""A killed benchmark run resumes where it stopped and ends with the same result."""

import json
import os

import keras
import numpy as np
import pytest

from keras_newton.bench import seed_state, training
from keras_newton.bench.sort_task import sort_task
from keras_newton.bench.task import Variant, build_variant_model, steps_per_execution


class Killed(Exception):
    """Stands in for the process being killed."""


class KillAt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        # With several steps per execution, ``batch`` is the last step of
        # the call, so the kill comes at the first call that reaches it.
        if self.current == self.epoch and batch >= self.batch:
            raise Killed()


def _task():
    return sort_task({"n": 3, "steps": 6, "eval_every": 2, "batch_size": 3, "eval_sets": 6})


VARIANT = Variant("newton-fisher", newton="fisher", damping=0.1)


def _run(task, run_dir, **kwargs):
    keras.backend.clear_session()
    return training.run_training(task, VARIANT, 3, str(run_dir), verbose=0,
                                 jit_compile=False, **kwargs)


def _assert_same(resumed, reference):
    keys = ("step", "train_loss", "val_exact_match", "test_exact_match", "test_rank_accuracy")
    np.testing.assert_allclose([[h[k] for k in keys] for h in resumed["history"]],
                               [[h[k] for k in keys] for h in reference["history"]],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(resumed["weights_checksum"], reference["weights_checksum"],
                               rtol=1e-6)
    assert resumed["best_step"] == reference["best_step"]


@pytest.fixture(scope="module")
def task():
    return _task()


@pytest.fixture(scope="module")
def reference(task, tmp_path_factory):
    return _run(task, tmp_path_factory.mktemp("reference"))


def test_resume_mid_epoch_reproduces_uninterrupted_run(task, reference, tmp_path):
    assert [h["step"] for h in reference["history"]] == [2, 4, 6]

    run_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        _run(task, run_dir, callbacks=[KillAt(epoch=2, batch=0)])
    assert not os.path.exists(run_dir / training.RECORD_FILE)
    assert training._saved_epoch(str(run_dir / training.BACKUP_DIR)) == 2
    resumed = _run(task, run_dir)
    _assert_same(resumed, reference)
    # The weights trained before the kill differ from a fresh start, so equal
    # final weights mean the state and the data position were both restored.
    assert os.path.exists(run_dir / training.FINAL_WEIGHTS_FILE)
    # A finished run is read back, not repeated.
    assert _run(task, run_dir) == json.load(open(run_dir / training.RECORD_FILE))


def test_kill_between_history_and_backup_loses_nothing(task, reference, tmp_path,
                                                     monkeypatch):
    run_dir = tmp_path / "killed"
    original = training.EvaluateThenBackup._save_backup

    def save_then_die(self, epoch):
        if epoch == 2:  # history of epoch 1 is written, its state (after 2 epochs) is not
            raise Killed()
        return original(self, epoch)

    monkeypatch.setattr(training.EvaluateThenBackup, "_save_backup", save_then_die)
    with pytest.raises(Killed):
        _run(task, run_dir)
    assert len(json.load(open(run_dir / training.HISTORY_FILE))) == 2
    monkeypatch.setattr(training.EvaluateThenBackup, "_save_backup", original)
    resumed = _run(task, run_dir)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1, 2]
    _assert_same(resumed, reference)


def test_select_uses_validation_and_earliest_tie():
    history = [{"step": 1, "val_m": 0.5, "test_m": 0.1},
               {"step": 2, "val_m": 0.7, "test_m": 0.2},
               {"step": 3, "val_m": 0.7, "test_m": 0.9}]
    chosen = training.select(history, "m", ["m"])
    assert (chosen["best_step"], chosen["m"], chosen["final_m"]) == (2, 0.2, 0.9)
    with pytest.raises(ValueError, match="no evaluation"):
        training.select([], "m", ["m"])


def test_reused_compiled_model_equals_fresh_model(task, reference, tmp_path):
    # A grid compiles once per variant and re-initializes per seed: same result.
    keras.backend.clear_session()
    model = build_variant_model(task, VARIANT, seed=11, jit_compile=False)
    model.fit(task.train_stream(0), steps_per_epoch=2, epochs=1, verbose=0)
    reused = training.run_training(task, VARIANT, 3, str(tmp_path / "reused"), verbose=0,
                                   jit_compile=False, model=model)
    _assert_same(reused, reference)


@pytest.mark.parametrize("eval_every, limit, expected",
                         [(500, 50, 50), (2, 50, 2), (97, 50, 1), (1000, 30, 25), (1, 50, 1)])
def test_steps_per_execution_is_the_largest_divisor(eval_every, limit, expected):
    assert steps_per_execution(eval_every, limit) == expected


@pytest.mark.parametrize("eval_every, limit", [(0, 50), (10, 0)])
def test_steps_per_execution_rejects_non_positive(eval_every, limit):
    with pytest.raises(ValueError, match="eval_every and limit"):
        steps_per_execution(eval_every, limit)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager_fn", "xla"])
def test_several_steps_per_execution_train_the_same_run(task, tmp_path, jit_compile):
    # run_training compiles with steps_per_execution(eval_every) = 2 here; one
    # step per call must give the same history and weights.
    runs = {}
    for per_call in (None, 1):
        keras.backend.clear_session()
        model = (None if per_call is None else
                 build_variant_model(task, VARIANT, seed=3, jit_compile=jit_compile,
                                     steps_per_execution=per_call))
        runs[per_call] = training.run_training(task, VARIANT, 3, str(tmp_path / str(per_call)),
                                               verbose=0, jit_compile=jit_compile, model=model)
    assert steps_per_execution(task.config["eval_every"]) == 2
    _assert_same(runs[None], runs[1])


# --- stochastic losses: the noise is part of the training state ---------------

PERTURBED_VARIANT = Variant("perturbed-fisher", newton="fisher", damping=0.1)


@pytest.fixture(scope="module")
def perturbed_task():
    from keras_newton.bench.path_task import path_task

    # Fenchel-Young loss of the perturbed optimizer: noise from a SeedGenerator.
    return path_task({"method": "perturbed", "samples": 2, "grid_size": 4, "train_maps": 8,
                      "eval_maps": 2, "batch_size": 2, "steps": 2, "eval_every": 1})


@pytest.fixture(scope="module")
def perturbed_model(perturbed_task):
    # One compiled model for every run, as a grid does (tracing dominates here).
    keras.backend.clear_session()
    return build_variant_model(perturbed_task, PERTURBED_VARIANT, seed=5, jit_compile=False)


def _run_perturbed(task, model, run_dir, **kwargs):
    return training.run_training(task, PERTURBED_VARIANT, 5, str(run_dir), verbose=0,
                                 jit_compile=False, model=model, **kwargs)


def _assert_same_path_run(run, reference):
    keys = ("step", "train_loss", "val_perfect_match", "test_cost_ratio")
    np.testing.assert_allclose([[h[k] for k in keys] for h in run["history"]],
                               [[h[k] for k in keys] for h in reference["history"]],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(run["weights_checksum"], reference["weights_checksum"],
                               rtol=1e-6)


@pytest.fixture(scope="module")
def perturbed_reference(perturbed_task, perturbed_model, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("perturbed")
    record = _run_perturbed(perturbed_task, perturbed_model, run_dir)
    return record, seed_state.load_epoch_states(str(run_dir / seed_state.SEED_STATE_FILE))


def test_seed_states_are_saved_per_epoch(perturbed_task, perturbed_reference):
    _, saved = perturbed_reference
    assert sorted(saved) == ["1", "2"]
    counters = [saved[epoch]["seed_generator"] for epoch in ("1", "2")]
    assert counters[0][0] == counters[1][0] == perturbed_task.loss.seed
    assert 0 < counters[0][1] < counters[1][1]  # every step draws fresh noise


def test_same_seed_twice_in_one_process_gives_the_same_run(perturbed_task, perturbed_model,
                                                           perturbed_reference, tmp_path):
    # The grid's loss object is shared: its noise counter went on advancing.
    assert int(perturbed_task.loss.seed_generator.state.numpy()[1]) > 0
    again = _run_perturbed(perturbed_task, perturbed_model, tmp_path / "again")
    _assert_same_path_run(again, perturbed_reference[0])


def test_perturbed_resume_reproduces_uninterrupted_run(perturbed_task, perturbed_model,
                                                       perturbed_reference, tmp_path):
    run_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        _run_perturbed(perturbed_task, perturbed_model, run_dir,
                       callbacks=[KillAt(epoch=1, batch=0)])
    assert training._saved_epoch(str(run_dir / training.BACKUP_DIR)) == 1
    # A fresh process would build the loss anew: its noise would restart at 0.
    seed_state.reset_counters(seed_state.loss_seed_generators(perturbed_task.loss))
    resumed = _run_perturbed(perturbed_task, perturbed_model, run_dir)
    assert [h["epoch"] for h in resumed["history"]] == [0, 1]
    _assert_same_path_run(resumed, perturbed_reference[0])


def test_perturbed_kill_between_seed_states_and_backup(perturbed_task, perturbed_model,
                                                       perturbed_reference, tmp_path,
                                                       monkeypatch):
    run_dir = tmp_path / "killed"
    original = training.EvaluateThenBackup._save_backup

    def die_after_seed_states(self, epoch):
        if epoch == 2:  # seed states of epoch 2 saved, weights of epoch 2 not
            raise Killed()
        return original(self, epoch)

    monkeypatch.setattr(training.EvaluateThenBackup, "_save_backup", die_after_seed_states)
    with pytest.raises(Killed):
        _run_perturbed(perturbed_task, perturbed_model, run_dir)
    saved = seed_state.load_epoch_states(str(run_dir / seed_state.SEED_STATE_FILE))
    assert sorted(saved) == ["1", "2"]
    monkeypatch.setattr(training.EvaluateThenBackup, "_save_backup", original)
    resumed = _run_perturbed(perturbed_task, perturbed_model, run_dir)  # resumes at epoch 1
    _assert_same_path_run(resumed, perturbed_reference[0])


def test_cached_hessian_resume_reproduces_uninterrupted_run(task, tmp_path):
    # Refresh every 3 steps, 2 steps per epoch, killed in epoch 1: a resumed
    # process starts with an empty cache, so both runs refresh at epoch starts.
    variant = Variant.from_flags("cached-hessian", newton="hessian", damping=0.1,
                                 hessian_samples=2, hessian_refresh_every=3)
    keras.backend.clear_session()
    model = build_variant_model(task, variant, seed=3, jit_compile=False)
    reference = training.run_training(task, variant, 3, str(tmp_path / "reference"),
                                      verbose=0, jit_compile=False, model=model)
    cache = model._newton_wrappers[0].hessian_cache
    assert cache is not None and int(cache.step.numpy()) == 2  # restarted each epoch
    run_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        training.run_training(task, variant, 3, str(run_dir), verbose=0, jit_compile=False,
                              model=model, callbacks=[KillAt(epoch=1, batch=0)])
    cache.step.assign(0)  # as in a new process
    resumed = training.run_training(task, variant, 3, str(run_dir), verbose=0,
                                    jit_compile=False, model=model)
    assert (resumed["hessian_samples"], resumed["hessian_refresh_every"]) == (2, 3)
    _assert_same(resumed, reference)
