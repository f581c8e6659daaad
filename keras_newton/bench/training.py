"""One training run: fit with periodic evaluation, resumable, with model selection.

Training runs for ``steps`` optimizer steps as ``steps / eval_every`` Keras
epochs of ``eval_every`` steps, with Keras' own progress bar. After every
epoch the model is evaluated on the validation and the test set, the history
is written, then the noise state of stochastic losses
(:mod:`keras_newton.bench.seed_state`), and only then the training state
(weights, optimizer variables, epoch) is backed up by
:class:`EvaluateThenBackup`. A killed run started again with the same
``run_dir`` therefore resumes at the last committed epoch, with the training
stream advanced to exactly that step and the loss drawing the noise it would
have drawn, and ends with the same weights and metrics as an uninterrupted
run. Every fresh run starts its loss's noise from the beginning, so a run's
result does not depend on the runs made before it in the process. A finished
run leaves ``record.json`` and is not repeated.

On-disk layout of ``run_dir``::

    history.json                evaluations so far (one entry per epoch)
    seed_states.json            noise states by epoch (stochastic losses only)
    backup/epoch-<K>.weights.h5 weights and optimizer variables after K epochs
    backup/epoch-<K>.json       manifest: epoch, file name, size, SHA-256
    final.weights.h5            the trained weights (written when training ends)
    record.json                 the run's result (written last)

Crash safety. Every file is written to a temporary ``.tmp-*`` file in the
same folder, flushed to disk and renamed over its target (``os.replace``), so
no file is ever seen half-written. The backup of epoch ``K`` is committed by
the rename of its manifest, which comes after the weights file and records
its size and SHA-256 (:mod:`keras_newton.bench.checkpoint`); the previous
backup is deleted only after that commit, so two are kept. The backup folder
is deleted after ``record.json`` is written. On resume
(:func:`restore_backup`) the newest backup whose manifest parses, whose
weights match the checksum and load, whose history holds every earlier epoch
and (stochastic losses) whose seed states were saved is restored; a damaged or
inconsistent one (truncated or altered weights, a manifest that does not
parse or names a missing file, weights without a manifest, an unreadable
history) is reported in a ``RuntimeWarning`` that says whether the run resumes
from an older backup or starts from scratch, and removed; the run never mixes
the weights of one epoch with the position of another. Backups of the
previous layout (``keras.callbacks.BackupAndRestore``'s ``latest.weights.h5``
and ``training_metadata.json``) resume when consistent and restart the run
with a warning otherwise.

Testing aid: every write passes named kill points, ``<label>:before-write``,
``:torn`` (temporary file cut in half), ``:before-rename`` and
``:after-rename`` for the labels ``history``, ``seed_states.json``,
``backup-weights``, ``backup-manifest``, ``final-weights``, ``record`` and the
results files' names, plus ``backup-prune:removed`` (each old backup file
deleted), ``train-batch`` (every call of the training step) and
``run:trained`` (after ``fit``). With ``KERAS_NEWTON_KILL_AT=<point>:<count>``
the process kills itself with SIGKILL at the ``count``-th visit of
``<point>``; ``KERAS_NEWTON_KILL_LOG=<file>`` lists the points a run passes
(:mod:`keras_newton.bench._killpoint`).

With ``hessian_refresh_every = k > 1`` the Newton loss caches its curvature
between refreshes; that cache is not saved, so the bench recomputes it at the
first step of every epoch (then every ``k`` steps within the epoch), in
resumed and uninterrupted runs alike.

Model selection (as in the paper): the reported test metrics are those at the
evaluation with the best validation value of ``task.selection`` (earliest on
ties); the last evaluation's test metrics are kept as ``final_*``.

Example:
  >>> record = run_training(task, Variant("baseline"), seed=0,
  ...                       run_dir="/tmp/run")           # doctest: +SKIP
  >>> record["test_exact_match"]                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import warnings
from typing import Callable, Sequence

import keras
import numpy as np

from keras_newton.bench import checkpoint, results, seed_state
from keras_newton.bench._killpoint import kill_point
from keras_newton.bench.resume import (  # noqa: F401 (_saved_epoch: read by the resume tests)
    BACKUP_DIR,
    HISTORY_FILE,
    _saved_epoch,
    read_json,
    restore_backup,
)
from keras_newton.bench.task import Task, Variant, build_variant_model, steps_per_execution

RECORD_FILE = "record.json"
FINAL_WEIGHTS_FILE = "final.weights.h5"


def weights_checksum(model: keras.Model) -> list[float]:
    """``[Σ w, Σ w²]`` over all weights (float64): a cheap fingerprint of a model."""
    values = [np.asarray(w, np.float64) for w in model.get_weights()]
    return [float(sum(v.sum() for v in values)), float(sum((v * v).sum() for v in values))]


def restart_curvature_caches(model: keras.Model) -> None:
    """Makes the next step of ``model`` recompute its cached curvatures.

    A :class:`keras_newton.NewtonLossModel` with ``hessian_refresh_every > 1``
    keeps the last Hessian factorization per output in a
    :class:`keras_newton.newton._curvature_cache.CurvatureCache` and refreshes it when
    the cache's call counter is a multiple of ``k``; zeroing the counter
    forces a refresh. Models without caches are left alone.
    """
    for wrapper in getattr(model, "_newton_wrappers", {}).values():
        cache = getattr(wrapper, "hessian_cache", None)
        if cache is not None and cache.step is not None:
            cache.step.assign(0)


def evaluate(model: keras.Model, task: Task, split: str) -> dict[str, float]:
    """Mean of every task metric on one fixed evaluation set."""
    x, y = task.eval_sets[split]
    predictions = model.predict(x, batch_size=task.eval_batch_size, verbose=0)
    return {name: float(np.mean(np.asarray(fn(y, predictions))))
            for name, fn in task.metrics.items()}


class EvaluateThenBackup(keras.callbacks.Callback):
    """Evaluates and records history, then saves the training state.

    Ordering matters for resuming: the history of an epoch is written first,
    then the seed-generator states of the task's loss (keyed by epoch), then
    the weights backup of that epoch (:func:`keras_newton.bench.checkpoint.save`);
    on restart (:func:`restore_backup`, before ``fit``) the history is cut back
    to the restored epoch and the loss gets the seed states of that epoch, so
    an interruption between any two loses nothing and duplicates nothing. A
    fresh run (nothing restored) resets the loss's seed counters to 0. Cached
    curvatures are recomputed at the first step of every epoch.
    """

    def __init__(self, task: Task, run_dir: str, expected_epoch: int,
                 diagnostics: Callable[[keras.Model], dict] | None = None,
                 log_label: str | None = None):
        super().__init__()
        self.task = task
        # When set, one line per evaluation is printed (see fit_verbosity).
        self.log_label = log_label
        self.diagnostics = diagnostics
        self.backup_dir = os.path.join(run_dir, BACKUP_DIR)
        self.history_path = os.path.join(run_dir, HISTORY_FILE)
        self.seed_state_path = os.path.join(run_dir, seed_state.SEED_STATE_FILE)
        self.seed_generators = seed_state.loss_seed_generators(task.loss)
        self.expected_epoch = expected_epoch
        self.history: list[dict] = []
        self._epoch_start = 0.0

    def _restore_seed_states(self, restored_epoch: int) -> None:
        if not self.seed_generators:
            return
        if restored_epoch == 0:
            seed_state.reset_counters(self.seed_generators)
            return
        saved = seed_state.load_epoch_states(self.seed_state_path)
        if str(restored_epoch) not in saved:
            raise RuntimeError(
                f"the backup restored epoch {restored_epoch} but {self.seed_state_path!r} "
                f"holds no seed states for it (epochs: {sorted(saved)}); the loss's "
                "noise cannot be resumed; delete the run folder")
        seed_state.assign_states(self.seed_generators, saved[str(restored_epoch)])

    def on_train_begin(self, logs=None):
        restored = int(getattr(self.model, "_initial_epoch", 0) or 0)
        if restored != self.expected_epoch:
            raise RuntimeError(
                f"backup restored epoch {restored} but the data stream was built for "
                f"epoch {self.expected_epoch}; delete {self.history_path!r}'s folder")
        self._restore_seed_states(restored)
        self.history = []
        if restored and os.path.exists(self.history_path):
            with open(self.history_path, encoding="utf-8") as stream:
                saved = json.load(stream)
            # restore_backup checked that epochs 0 … restored-1 are all there.
            self.history = [h for h in saved if isinstance(h, dict)
                            and isinstance(h.get("epoch"), int) and h["epoch"] < restored]

    def on_epoch_begin(self, epoch, logs=None):
        # The cached curvature is not in the backup: recompute it at every
        # epoch start, so a resumed run (empty cache) matches an uninterrupted one.
        restart_curvature_caches(self.model)
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        kill_point("train-batch")

    def _save_backup(self, epoch: int) -> None:
        checkpoint.save(self.model, self.backup_dir, epoch)

    def on_epoch_end(self, epoch, logs=None):
        train_seconds = time.perf_counter() - self._epoch_start
        entry = {"epoch": int(epoch),
                 "step": int((epoch + 1) * self.params["steps"]),
                 "train_loss": float((logs or {}).get("loss", math.nan)),
                 "train_seconds": train_seconds}
        for split in ("validation", "test"):
            prefix = "val" if split == "validation" else "test"
            for name, value in evaluate(self.model, self.task, split).items():
                entry[f"{prefix}_{name}"] = value
        if self.diagnostics is not None:
            entry.update({f"diag_{k}": v for k, v in self.diagnostics(self.model).items()})
        self.history.append(entry)
        if self.log_label is not None:
            print(_evaluation_line(self.log_label, entry), flush=True)
        results.atomic_write_json(self.history_path, self.history, label="history")
        if self.seed_generators:
            seed_state.save_epoch_states(self.seed_state_path, epoch + 1,
                                         seed_state.read_states(self.seed_generators))
        self._save_backup(epoch + 1)


def fit_verbosity(verbose: int | str | None = "auto") -> tuple[int, bool]:
    """Keras ``fit`` verbosity, and whether to print one line per evaluation.

    ``"auto"`` (or ``None``) shows Keras' progress bar when standard output is
    a terminal; in a redirected log the escape codes of a bar are noise, so
    ``fit`` is silent and the evaluation callback prints one line per
    evaluation instead. ``0``, ``1`` and ``2`` are Keras' own settings.

    Raises:
      ValueError: if ``verbose`` is none of these.
    """
    if verbose is None or verbose == "auto":
        return (1, False) if sys.stdout.isatty() else (0, True)
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose), False


def _evaluation_line(label: str, entry: dict) -> str:
    """``<label> step <k>: loss …, val_<metric> …, test_<metric> … (<s> s)``."""
    values = [f"loss {entry['train_loss']:.4g}"]
    values += [f"{key} {value:.4g}" for key, value in entry.items()
               if key.startswith(("val_", "test_")) and isinstance(value, (int, float))]
    return f"{label} step {entry['step']}: {', '.join(values)} ({entry['train_seconds']:.1f} s)"


def select(history: Sequence[dict], selection: str, metrics: Sequence[str]) -> dict:
    """Test metrics at the best validation ``selection`` value (earliest on ties)."""
    if not history:
        raise ValueError("no evaluation happened (steps < eval_every?)")
    best = max(range(len(history)), key=lambda i: (history[i][f"val_{selection}"], -i))
    chosen, last = history[best], history[-1]
    out = {"best_step": chosen["step"], "steps": last["step"]}
    for name in metrics:
        out[name] = chosen[f"test_{name}"]
        out[f"val_{name}"] = chosen[f"val_{name}"]
        out[f"final_{name}"] = last[f"test_{name}"]
    return out


def reset_model(model: keras.Model, task: Task, seed: int) -> keras.Model:
    """Gives a compiled ``model`` the initial weights of ``seed`` and a fresh optimizer.

    Reusing one compiled model across seeds skips the (XLA) compilation of
    every further run; the weights are those a freshly built model of the
    same seed gets, and the optimizer's step counter and moments are zeroed.
    (The loss's seed counters and cached curvatures are reset by
    :class:`EvaluateThenBackup`.)
    """
    keras.utils.set_random_seed(int(seed))
    model.set_weights(task.build_model().get_weights())
    optimizer = model.optimizer
    for variable in optimizer.variables:
        if "learning_rate" not in variable.path:
            variable.assign(np.zeros(variable.shape, variable.dtype))
    model._initial_epoch = None  # Left behind by restore_backup of a previous run.
    return model


def _check_same_run(record: dict, task: Task, variant: Variant, run_dir: str) -> None:
    """Refuses to reuse a finished run of another configuration.

    Run folders are named by method, Newton variant and seed, so a rerun with
    a changed learning rate, λ or step count finds the old run's folder;
    reading its record back would silently report the old setting. Keys that
    only one side has (a record from before a key existed) are not compared.

    Raises:
      ValueError: naming the folder and every setting that differs.
    """
    saved = json.loads(json.dumps(record.get("config", {})))
    wanted = json.loads(json.dumps(dict(task.config)))
    differences = [f"{key}: {saved[key]!r} there, {wanted[key]!r} now"
                   for key in sorted(set(saved) & set(wanted)) if saved[key] != wanted[key]]
    if variant.is_newton and "damping" in record and record["damping"] != variant.damping:
        differences.append(f"damping: {record['damping']!r} there, {variant.damping!r} now")
    if differences:
        raise ValueError(
            f"{run_dir} holds a finished run of another configuration "
            f"({'; '.join(differences)}); use another output folder or remove that run")


def run_training(task: Task, variant: Variant, seed: int, run_dir: str, *,
                 verbose: int | str = "auto", jit_compile: bool | str = True,
                 callbacks: Sequence[keras.callbacks.Callback] = (),
                 model: keras.Model | None = None,
                 diagnostics: Callable[[keras.Model], dict] | None = None) -> dict:
    """Trains ``variant`` of ``task`` with ``seed``; resumable through ``run_dir``.

    Args:
      task: the task (its config holds ``steps`` and ``eval_every``).
      variant: baseline or Newton variant.
      seed: weight-initialization seed.
      run_dir: folder for the backup, the history and ``record.json``.
      verbose: ``"auto"`` (a progress bar on a terminal, else one line per
        evaluation; see :func:`fit_verbosity`) or Keras' ``0``, ``1``, ``2``.
      jit_compile: XLA (``True`` by default).
      callbacks: extra Keras callbacks (after the backup callback).
      model: a compiled model of this task and variant to reuse (see
        :func:`reset_model`); built and compiled when ``None``.
      diagnostics: ``model -> {name: float}`` called at every evaluation;
        its values enter the history as ``diag_<name>`` (see
        :mod:`keras_newton.bench.diagnostics`).

    Returns:
      The run record: variant, seed, config, history, selected and final
      test metrics, wall times.

    Raises:
      ValueError: when ``run_dir`` holds a finished run whose configuration
        or λ differs from ``task`` and ``variant``.
    """
    record_path = os.path.join(run_dir, RECORD_FILE)
    if os.path.exists(record_path):
        problems: list[str] = []
        record, _ = read_json(record_path, "record", problems)
        if isinstance(record, dict):
            _check_same_run(record, task, variant, run_dir)
            # A kill may have come between the record and the backup's removal.
            shutil.rmtree(os.path.join(run_dir, BACKUP_DIR), ignore_errors=True)
            return record
        warnings.warn(f"run {run_dir}: {'; '.join(problems) or 'record is not a mapping'}; "
                      "finishing the run again", RuntimeWarning, stacklevel=2)
        os.remove(record_path)
    steps, eval_every = int(task.config["steps"]), int(task.config["eval_every"])
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be >= 1, got {steps}, {eval_every}")
    epochs = max(1, math.ceil(steps / eval_every))
    if model is None:
        model = build_variant_model(task, variant, seed, jit_compile=jit_compile,
                                    steps_per_execution=steps_per_execution(eval_every))
    else:
        reset_model(model, task, seed)
    start_epoch = restore_backup(model, run_dir,
                                 needs_seed_states=bool(seed_state.loss_seed_generators(task.loss)))
    fit_verbose, line_per_evaluation = fit_verbosity(verbose)
    backup = EvaluateThenBackup(task, run_dir, start_epoch, diagnostics,
                                log_label=f"{variant.name} seed {seed}"
                                if line_per_evaluation else None)
    started = time.perf_counter()
    model.fit(task.train_stream(start_epoch * eval_every), epochs=epochs,
              steps_per_epoch=eval_every, callbacks=[backup, *callbacks], verbose=fit_verbose)
    wall = time.perf_counter() - started
    history = backup.history
    kill_point("run:trained")
    results.atomic_write_file(os.path.join(run_dir, FINAL_WEIGHTS_FILE),
                              lambda temporary: model.save_weights(temporary),
                              label="final-weights", suffix=".weights.h5")
    record = {
        "variant": variant.name,
        "seed": int(seed),
        "newton": variant.newton,
        "damping": variant.damping,
        **variant.hessian_options(),
        "config": dict(task.config),
        "history": history,
        "train_seconds": float(sum(h["train_seconds"] for h in history)),
        "wall_seconds_last_session": wall,
        "weights_checksum": weights_checksum(model),
        **select(history, task.selection, list(task.metrics)),
    }
    results.atomic_write_json(record_path, record, label="record")
    # The record is the run's result; the backup is no longer needed.
    shutil.rmtree(os.path.join(run_dir, BACKUP_DIR), ignore_errors=True)
    return record


__all__ = ["EvaluateThenBackup", "evaluate", "fit_verbosity", "restart_curvature_caches",
           "restore_backup",
           "run_training", "select", "weights_checksum"]
