"""Crash-safe backups of a training run: weights and epoch committed together.

A backup of a run after ``K`` completed epochs is two files in the run's
``backup/`` folder:

* ``epoch-<K>.weights.h5``: the model's and the optimizer's variables
  (``model.save_weights``), and
* ``epoch-<K>.json``: the manifest ``{"format": 1, "epoch": K, "weights":
  "epoch-<K>.weights.h5", "bytes": …, "sha256": …}``,

each written to a temporary file, flushed and renamed into place, the weights
first. The manifest's rename is the single commit point: a backup exists once
its manifest does, and a manifest is only believed when the weights file it
names exists with the recorded size and SHA-256. The previous backup is
deleted only after the next one is committed (two are kept, so a damaged
newest one still leaves one to fall back to).

:func:`backups` lists the committed backups newest first and says why every
other file in the folder is not one (an uncommitted weights file, a manifest
that does not parse, a checksum that does not match, …). Backups written by
``keras.callbacks.BackupAndRestore`` (``latest.weights.h5`` and
``training_metadata.json``, written in place one after the other) are still
read: they count when the metadata parses and was written after the weights
(modification times), since that callback writes the metadata second.

Example:
  >>> found, problems = backups("/tmp/run/backup")      # doctest: +SKIP
  >>> [b.epoch for b in found]                          # doctest: +SKIP
  [3, 2]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from typing import Sequence

import keras

from keras_newton.bench import results
from keras_newton.bench._killpoint import kill_point

MANIFEST_FORMAT = 1
KEEP = 2
LEGACY_WEIGHTS = "latest.weights.h5"
LEGACY_METADATA = "training_metadata.json"
_MANIFEST = re.compile(r"^epoch-(\d+)\.json$")
_WEIGHTS = re.compile(r"^epoch-(\d+)\.weights\.h5$")


def weights_name(epoch: int) -> str:
    """File name of the weights of the backup after ``epoch`` completed epochs."""
    return f"epoch-{int(epoch):06d}.weights.h5"


def manifest_name(epoch: int) -> str:
    """File name of the manifest of the backup after ``epoch`` completed epochs."""
    return f"epoch-{int(epoch):06d}.json"


@dataclasses.dataclass(frozen=True)
class Backup:
    """A committed backup: the epoch to resume at and its weights file."""

    epoch: int
    weights: str
    files: tuple[str, ...]  # Every file that belongs to it (for clean-up).
    legacy: bool = False

    def describe(self) -> str:
        kind = "Keras BackupAndRestore backup" if self.legacy else "backup"
        return f"{kind} of epoch {self.epoch} ({os.path.basename(self.weights)})"


def sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(model: keras.Model, backup_dir: str, epoch: int) -> None:
    """Commits the backup after ``epoch`` epochs, then drops all but the last ``KEEP``.

    Order: weights (temporary file, rename), manifest with their checksum
    (temporary file, rename: the commit), then the older backups, manifest
    before weights, so no manifest ever names a deleted file.
    """
    os.makedirs(backup_dir, exist_ok=True)
    weights = os.path.join(backup_dir, weights_name(epoch))
    results.atomic_write_file(weights, lambda temporary: model.save_weights(temporary),
                              label="backup-weights", suffix=".weights.h5")
    results.atomic_write_json(
        os.path.join(backup_dir, manifest_name(epoch)),
        {"format": MANIFEST_FORMAT, "epoch": int(epoch), "weights": weights_name(epoch),
         "bytes": os.path.getsize(weights), "sha256": sha256(weights)},
        label="backup-manifest")
    _prune(backup_dir, keep_from=int(epoch) - KEEP + 1)


def _prune(backup_dir: str, keep_from: int) -> None:
    names = os.listdir(backup_dir)
    old = [n for n in names
           if (m := _MANIFEST.match(n) or _WEIGHTS.match(n)) and int(m.group(1)) < keep_from]
    old += [n for n in (LEGACY_METADATA, LEGACY_METADATA + ".bkp", LEGACY_WEIGHTS,
                        LEGACY_WEIGHTS + ".bkp") if n in names]
    old += [n for n in names if n.startswith(".tmp-")]  # Left by a killed write.
    # Manifests (the commit points) go first: a backup is withdrawn before its
    # weights disappear.
    old.sort(key=lambda n: not (n.endswith(".json") and not n.startswith(".tmp-")))
    for name in old:
        try:
            os.remove(os.path.join(backup_dir, name))
        except FileNotFoundError:
            pass
        kill_point("backup-prune:removed")


def _check_manifest(backup_dir: str, name: str, epoch: int) -> tuple[Backup | None, str]:
    path = os.path.join(backup_dir, name)
    try:
        with open(path, encoding="utf-8") as stream:
            manifest = json.load(stream)
    except (OSError, ValueError) as error:
        return None, f"{name}: unreadable manifest ({error})"
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None, f"{name}: not a format-{MANIFEST_FORMAT} manifest"
    if manifest.get("epoch") != epoch or manifest.get("weights") != weights_name(epoch):
        return None, (f"{name}: names epoch {manifest.get('epoch')!r} and weights "
                      f"{manifest.get('weights')!r}, not those of its file name")
    weights = os.path.join(backup_dir, weights_name(epoch))
    if not os.path.exists(weights):
        return None, f"{name}: its weights file {weights_name(epoch)} is missing"
    if os.path.getsize(weights) != manifest.get("bytes"):
        return None, (f"{weights_name(epoch)}: {os.path.getsize(weights)} bytes, its manifest "
                      f"says {manifest.get('bytes')!r} (truncated or replaced)")
    if sha256(weights) != manifest.get("sha256"):
        return None, f"{weights_name(epoch)}: SHA-256 does not match its manifest"
    return Backup(epoch, weights, (path, weights)), ""


def _check_legacy(backup_dir: str, names: set[str]) -> tuple[Backup | None, str]:
    weights = os.path.join(backup_dir, LEGACY_WEIGHTS)
    metadata = os.path.join(backup_dir, LEGACY_METADATA)
    files = tuple(os.path.join(backup_dir, n) for n in sorted(names)
                  if n.startswith((LEGACY_WEIGHTS, LEGACY_METADATA)))
    if LEGACY_WEIGHTS not in names:
        return None, f"{LEGACY_METADATA} without {LEGACY_WEIGHTS}"
    if LEGACY_METADATA not in names:
        return None, f"{LEGACY_WEIGHTS} without {LEGACY_METADATA} (its epoch is unknown)"
    try:
        with open(metadata, encoding="utf-8") as stream:
            epoch = json.load(stream)["epoch"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, f"{LEGACY_METADATA}: unreadable ({error!r})"
    if not isinstance(epoch, int) or epoch < 0:
        return None, f"{LEGACY_METADATA}: epoch {epoch!r} is not a count of epochs"
    if os.stat(metadata).st_mtime_ns < os.stat(weights).st_mtime_ns:
        # BackupAndRestore writes the weights, then the metadata: weights newer
        # than the metadata belong to a later epoch whose metadata never came.
        return None, f"{LEGACY_WEIGHTS} is newer than {LEGACY_METADATA} (killed between them)"
    return Backup(epoch, weights, files, legacy=True), ""


def backups(backup_dir: str) -> tuple[list[Backup], list[str]]:
    """The committed, intact backups in ``backup_dir`` (newest first) and the problems found.

    Returns:
      ``(found, problems)``: ``found`` lists the backups whose manifest parses
      and whose weights file has the recorded size and SHA-256, newest epoch
      first, then a consistent ``BackupAndRestore`` backup if there is one;
      ``problems`` has one line per file that is not part of a good backup
      (uncommitted weights, damaged files, an inconsistent legacy pair).
      Temporary files of interrupted writes are not reported.
    """
    if not os.path.isdir(backup_dir):
        return [], []
    names = set(os.listdir(backup_dir))
    found, problems = [], []
    manifests = {int(m.group(1)): n for n in names if (m := _MANIFEST.match(n))}
    for epoch in sorted(manifests, reverse=True):
        backup, problem = _check_manifest(backup_dir, manifests[epoch], epoch)
        if backup is not None:
            found.append(backup)
        else:
            problems.append(problem)
    for name in sorted(names):
        match = _WEIGHTS.match(name)
        if match and int(match.group(1)) not in manifests:
            problems.append(f"{name}: weights without a manifest (not committed)")
    if names & {LEGACY_WEIGHTS, LEGACY_METADATA}:
        backup, problem = _check_legacy(backup_dir, names)
        if backup is not None:
            found.append(backup)
        else:
            problems.append(problem)
    return found, problems


def remove_files(backup_dir: str, keep: Sequence[Backup]) -> None:
    """Deletes every file of ``backup_dir`` that belongs to none of ``keep``."""
    if not os.path.isdir(backup_dir):
        return
    kept = {os.path.abspath(f) for backup in keep for f in backup.files}
    # Manifests first, so none is left naming a deleted weights file.
    for name in sorted(os.listdir(backup_dir), key=lambda n: not n.endswith(".json")):
        path = os.path.join(backup_dir, name)
        if os.path.abspath(path) not in kept and os.path.isfile(path):
            os.remove(path)


__all__ = ["Backup", "KEEP", "backups", "manifest_name", "remove_files", "save", "sha256",
           "weights_name"]
