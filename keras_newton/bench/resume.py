"""Resuming a run: the newest intact backup of a run folder, or a clean start.

Split from :mod:`keras_newton.bench.training`, which writes the backups
(layout and guarantees in its module docstring); this module reads them back
and decides where a rerun starts.
"""

from __future__ import annotations

import json
import os
import warnings

import keras

from keras_newton.bench import checkpoint, seed_state

HISTORY_FILE = "history.json"
BACKUP_DIR = "backup"


def _saved_epoch(backup_dir: str) -> int:
    """The epoch of the newest intact backup in ``backup_dir`` (0 without one)."""
    found, _ = checkpoint.backups(backup_dir)
    return found[0].epoch if found else 0


def read_json(path: str, what: str, problems: list[str]) -> tuple[object, bool]:
    """``(data, readable)``: ``path``'s JSON (``None`` when missing or unreadable;
    an unreadable file is noted in ``problems``)."""
    if not os.path.exists(path):
        return None, True
    try:
        with open(path, encoding="utf-8") as stream:
            return json.load(stream), True
    except (OSError, ValueError) as error:
        problems.append(f"{os.path.basename(path)}: unreadable {what} ({error})")
        return None, False


def _history_before(history, epoch: int) -> list[dict] | None:
    """The entries of epochs ``0 … epoch-1`` when ``history`` has each once, else ``None``."""
    if epoch == 0:
        return []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return None
    kept = [h for h in history if isinstance(h.get("epoch"), int) and h["epoch"] < epoch]
    return kept if [h["epoch"] for h in kept] == list(range(epoch)) else None


def _remove_temporary_files(folder: str) -> None:
    # ``.tmp-*`` files are writes a kill interrupted before their rename.
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(".tmp-"):
                os.remove(os.path.join(folder, name))


def restore_backup(model: keras.Model, run_dir: str, needs_seed_states: bool = False) -> int:
    """Restores the newest usable backup of ``run_dir`` into ``model``; the epoch to start at.

    A backup is used when its files are intact (see
    :mod:`keras_newton.bench.checkpoint`), the history holds every epoch
    before it, the seed states of its epoch were saved (when
    ``needs_seed_states``: stochastic losses) and its weights load. Otherwise
    the next older backup is tried; with none left the run starts from
    scratch, with the weights and optimizer variables it had before any
    load. Whatever is set aside is reported in one ``RuntimeWarning`` that
    says where the run resumes, and deleted, as are stray temporary files and
    unreadable history or seed-state files, so the run goes on from one
    consistent state. Damaged files never raise.

    Args:
      model: the compiled model of the run, with its initial weights.
      run_dir: the run's folder.
      needs_seed_states: whether the loss draws noise (its states must exist).

    Returns:
      The number of completed epochs restored (0 for a fresh start); also
      left in ``model._initial_epoch``, where ``fit`` picks it up.
    """
    backup_dir = os.path.join(run_dir, BACKUP_DIR)
    _remove_temporary_files(run_dir)
    found, problems = checkpoint.backups(backup_dir)
    history_path = os.path.join(run_dir, HISTORY_FILE)
    seed_path = os.path.join(run_dir, seed_state.SEED_STATE_FILE)
    history, history_readable = read_json(history_path, "history", problems)
    seeds, seeds_readable = (read_json(seed_path, "seed states", problems)
                             if needs_seed_states else (None, True))
    chosen, initial_state = None, None
    for backup in found:
        if _history_before(history, backup.epoch) is None:
            problems.append(f"{backup.describe()}: {HISTORY_FILE} lacks epochs before "
                            f"{backup.epoch}")
            continue
        if needs_seed_states and not (isinstance(seeds, dict) and str(backup.epoch) in seeds):
            problems.append(f"{backup.describe()}: no seed states saved for epoch "
                            f"{backup.epoch}")
            continue
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        if initial_state is None:  # To undo a load that fails halfway.
            initial_state = os.path.join(backup_dir, ".tmp-initial.weights.h5")
            model.save_weights(initial_state)
        try:
            model.load_weights(backup.weights)
        except Exception as error:  # Intact file that does not fit this model.
            problems.append(f"{backup.describe()}: does not load ({error!r})")
            continue
        chosen = backup
        break
    if initial_state is not None:
        if chosen is None:
            model.load_weights(initial_state)
        os.remove(initial_state)
    if problems:
        where = (f"resuming from the {chosen.describe()}" if chosen is not None else
                 "restarting this run from scratch")
        warnings.warn(f"run {run_dir}: {'; '.join(problems)}; {where}", RuntimeWarning,
                      stacklevel=2)
        # Keep the chosen backup and the older ones (fallbacks); drop the rest.
        checkpoint.remove_files(backup_dir, [b for b in found
                                             if chosen is not None and b.epoch <= chosen.epoch])
        for path, readable in ((history_path, history_readable), (seed_path, seeds_readable)):
            if not readable:
                os.remove(path)  # Not needed by the chosen backup; rewritten as the run goes.
    model._initial_epoch = chosen.epoch if chosen is not None else None
    return chosen.epoch if chosen is not None else 0


__all__ = ["BACKUP_DIR", "HISTORY_FILE", "read_json", "restore_backup"]
