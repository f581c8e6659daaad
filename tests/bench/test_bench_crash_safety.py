"""A run killed anywhere, even inside a write, resumes to the uninterrupted result.

Kills are injected at the named points of :mod:`keras_newton.bench._killpoint`
(``KERAS_NEWTON_KILL_AT=<point>:<count>``). The default tests stand the kill in
by an exception in-process (fast); the slow ones kill real CLI processes with
SIGKILL at every point. Damaged backups written by hand (truncated or altered
weights, unreadable manifests, missing files, the old in-place layout of
``keras.callbacks.BackupAndRestore``) must make the run fall back to an older
backup or start afresh, with a warning, and end with the same result.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_newton.bench import _killpoint, checkpoint, training
from keras_newton.bench.sort_task import sort_task
from keras_newton.bench.task import Variant

VARIANT = Variant("newton-fisher", newton="fisher", damping=0.1)
SEED = 3


class Killed(BaseException):
    """Stands in for SIGKILL in-process (BaseException: nothing catches it)."""


def _task():
    # Three epochs of two steps: backups after epochs 1, 2, 3; the third prunes the first.
    return sort_task({"n": 3, "steps": 6, "eval_every": 2, "batch_size": 3, "eval_sets": 6})


def _run(task, run_dir, **kwargs):
    keras.backend.clear_session()
    return training.run_training(task, VARIANT, SEED, str(run_dir), verbose=0,
                                 jit_compile=False, **kwargs)


def _comparable(record):
    history = [{k: v for k, v in h.items() if k != "train_seconds"} for h in record["history"]]
    drop = ("history", "train_seconds", "wall_seconds_last_session")
    return history, {k: v for k, v in record.items() if k not in drop}


def _assert_identical(record, reference):
    # One process, one machine: a resumed run is bit for bit the uninterrupted one.
    assert _comparable(record) == _comparable(reference)


def _runtime_warnings(caught):
    return " | ".join(str(w.message) for w in caught if issubclass(w.category, RuntimeWarning))


def _assert_clean(run_dir):
    leftovers = [os.path.join(root, n) for root, _, names in os.walk(run_dir) for n in names
                 if n.startswith(".tmp-")]
    assert leftovers == []
    assert not os.path.exists(os.path.join(run_dir, training.BACKUP_DIR))


@pytest.fixture(scope="module")
def task():
    return _task()


@pytest.fixture(scope="module")
def reference(task, tmp_path_factory):
    return _run(task, tmp_path_factory.mktemp("reference"))


@pytest.fixture
def kill_at(monkeypatch):
    """Sets ``KERAS_NEWTON_KILL_AT`` with a fresh count; the kill raises :class:`Killed`."""
    def die():
        raise Killed()

    monkeypatch.setattr(_killpoint, "_die", die)

    def arm(spec):
        monkeypatch.setattr(_killpoint, "_reached", {})
        if spec is None:
            monkeypatch.delenv(_killpoint.KILL_AT_ENV, raising=False)
        else:
            monkeypatch.setenv(_killpoint.KILL_AT_ENV, spec)

    return arm


# A few kill points, in-process: inside the weights write (torn temporary file),
# between weights and manifest, between history and backup, while pruning
# the oldest backup, and around the final files.
SLOW = pytest.mark.slow
QUICK_POINTS = ["backup-weights:torn:2", "backup-manifest:before-rename:2",
                "history:after-rename:3",
                pytest.param("backup-prune:removed:1", marks=SLOW),
                pytest.param("final-weights:before-rename:1", marks=SLOW),
                pytest.param("record:before-rename:1", marks=SLOW)]


@pytest.mark.parametrize("spec", QUICK_POINTS)
def test_kill_at_a_point_then_resume_gives_the_uninterrupted_run(task, reference, tmp_path,
                                                                   kill_at, spec):
    run_dir = tmp_path / "run"
    kill_at(spec)
    with pytest.raises(Killed):
        _run(task, run_dir)
    kill_at(None)
    resumed = _run(task, run_dir)
    _assert_identical(resumed, reference)
    _assert_clean(run_dir)


def test_kill_points_are_counted_per_name(monkeypatch):
    monkeypatch.setattr(_killpoint, "_reached", {})
    monkeypatch.setenv(_killpoint.KILL_AT_ENV, "a:b:2")
    deaths = []
    monkeypatch.setattr(_killpoint, "_die", lambda: deaths.append(1))
    for name in ("a:b", "a", "a:b", "a:b"):
        _killpoint.kill_point(name)
    assert deaths == [1]


def test_torn_point_halves_the_temporary_file(monkeypatch, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    monkeypatch.setattr(_killpoint, "_reached", {})
    monkeypatch.setenv(_killpoint.KILL_AT_ENV, "w:torn:1")
    monkeypatch.setattr(_killpoint, "_die", lambda: None)
    _killpoint.kill_point("w:torn", torn=str(path))
    assert path.read_bytes() == b"x" * 5


# --- damaged backups written by hand -------------------------------------------


@pytest.fixture(scope="module")
def interrupted(task, tmp_path_factory):
    """A run killed in its third epoch: intact backups of epochs 1 and 2."""
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    os.environ[_killpoint.KILL_AT_ENV] = "train-batch:3"
    saved_die, saved_reached = _killpoint._die, _killpoint._reached
    _killpoint._reached = {}

    def die():
        raise Killed()

    _killpoint._die = die
    try:
        with pytest.raises(Killed):
            _run(task, run_dir)
    finally:
        del os.environ[_killpoint.KILL_AT_ENV]
        _killpoint._die, _killpoint._reached = saved_die, saved_reached
    found, problems = checkpoint.backups(str(run_dir / training.BACKUP_DIR))
    assert [b.epoch for b in found] == [2, 1] and problems == []
    return run_dir


def _copy(interrupted, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(interrupted, run_dir)
    return run_dir, run_dir / training.BACKUP_DIR


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _damage(kind, run_dir, backup_dir):
    weights2 = backup_dir / checkpoint.weights_name(2)
    manifest2 = backup_dir / checkpoint.manifest_name(2)
    if kind == "truncated weights":
        _truncate(weights2)
    elif kind == "altered weights":
        _flip_a_byte(weights2)
    elif kind == "unparsable manifest":
        manifest2.write_text('{"format": 1, "epoch": 2, "weights"')
    elif kind == "manifest of another epoch":
        manifest2.write_text(json.dumps(dict(json.loads(manifest2.read_text()), epoch=1)))
    elif kind == "missing weights":
        weights2.unlink()
    elif kind == "weights without manifest":
        manifest2.unlink()
    elif kind == "every manifest unparsable":
        for epoch in (1, 2):
            (backup_dir / checkpoint.manifest_name(epoch)).write_text("not json")
    elif kind == "unparsable history":
        (run_dir / training.HISTORY_FILE).write_text("[{")
    elif kind == "history shorter than the backups":
        history = json.loads((run_dir / training.HISTORY_FILE).read_text())
        (run_dir / training.HISTORY_FILE).write_text(json.dumps(history[:1]))
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind, resumes_at, message", [
    ("truncated weights", 1, "bytes, its manifest says"),
    pytest.param("altered weights", 1, "SHA-256 does not match", marks=SLOW),
    ("unparsable manifest", 1, "unreadable manifest"),
    pytest.param("manifest of another epoch", 1, "not those of its file name", marks=SLOW),
    pytest.param("missing weights", 1, "is missing", marks=SLOW),
    pytest.param("weights without manifest", 1, "weights without a manifest", marks=SLOW),
    ("every manifest unparsable", 0, "unreadable manifest"),
    pytest.param("unparsable history", 0, "unreadable history", marks=SLOW),
    pytest.param("history shorter than the backups", 1, "lacks epochs before 2", marks=SLOW),
])
def test_damaged_backup_falls_back_with_a_warning(task, reference, interrupted, tmp_path,
                                                  kind, resumes_at, message):
    run_dir, backup_dir = _copy(interrupted, tmp_path)
    _damage(kind, run_dir, backup_dir)
    where = ("restarting this run from scratch" if resumes_at == 0 else
             f"resuming from the backup of epoch {resumes_at}")
    with pytest.warns(RuntimeWarning, match=message) as caught:
        resumed = _run(task, run_dir)
    assert where in _runtime_warnings(caught)
    _assert_identical(resumed, reference)
    _assert_clean(run_dir)


def test_restore_sets_aside_damaged_files_and_keeps_older_backups(task, interrupted, tmp_path):
    run_dir, backup_dir = _copy(interrupted, tmp_path)
    _flip_a_byte(backup_dir / checkpoint.weights_name(2))
    (backup_dir / ".tmp-abc.weights.h5").write_bytes(b"half a file")
    keras.backend.clear_session()
    from keras_newton.bench.task import build_variant_model

    model = build_variant_model(task, VARIANT, SEED, jit_compile=False)
    with pytest.warns(RuntimeWarning, match="resuming from the backup of epoch 1"):
        assert training.restore_backup(model, str(run_dir)) == 1
    assert sorted(os.listdir(backup_dir)) == [checkpoint.manifest_name(1),
                                              checkpoint.weights_name(1)]
    assert model._initial_epoch == 1


def test_weights_that_do_not_fit_the_model_restore_the_initial_state(task, interrupted,
                                                                      tmp_path):
    # An intact backup of another model: the load fails partway; the run
    # starts from scratch with exactly the weights it was built with.
    run_dir, backup_dir = _copy(interrupted, tmp_path)
    keras.backend.clear_session()
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for epoch in (1, 2):
        weights = backup_dir / checkpoint.weights_name(epoch)
        other.save_weights(str(weights))
        manifest = backup_dir / checkpoint.manifest_name(epoch)
        manifest.write_text(json.dumps(dict(json.loads(manifest.read_text()),
                                            bytes=os.path.getsize(weights),
                                            sha256=checkpoint.sha256(str(weights)))))
    from keras_newton.bench.task import build_variant_model

    model = build_variant_model(task, VARIANT, SEED, jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    before = [np.array(v) for v in model.variables + model.optimizer.variables]
    with pytest.warns(RuntimeWarning, match="does not load.*restarting this run from scratch"):
        assert training.restore_backup(model, str(run_dir)) == 0
    after = [np.array(v) for v in model.variables + model.optimizer.variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


@SLOW
def test_unreadable_record_finishes_the_run_again(task, reference, tmp_path):
    run_dir = tmp_path / "run"
    _run(task, run_dir)
    (run_dir / training.RECORD_FILE).write_text("{")
    with pytest.warns(RuntimeWarning, match="unreadable record"):
        again = _run(task, run_dir)
    _assert_identical(again, reference)


# --- the in-place layout of keras.callbacks.BackupAndRestore -------------------


def _legacy(interrupted, tmp_path, *, metadata_after_weights=True):
    """The interrupted run as BackupAndRestore would have left it at epoch 2."""
    run_dir, backup_dir = _copy(interrupted, tmp_path)
    weights = backup_dir / checkpoint.LEGACY_WEIGHTS
    metadata = backup_dir / checkpoint.LEGACY_METADATA
    os.replace(backup_dir / checkpoint.weights_name(2), weights)
    for name in os.listdir(backup_dir):
        if name.startswith("epoch-"):
            os.remove(backup_dir / name)
    metadata.write_text(json.dumps({"epoch": 2, "batch": 0}))
    now = time.time_ns()
    written = (now - 10**9, now) if metadata_after_weights else (now, now - 10**9)
    os.utime(weights, ns=(written[0], written[0]))
    os.utime(metadata, ns=(written[1], written[1]))
    return run_dir, weights, metadata


def test_consistent_legacy_backup_resumes(task, reference, interrupted, tmp_path):
    import warnings

    run_dir, _, _ = _legacy(interrupted, tmp_path)
    assert training._saved_epoch(str(run_dir / training.BACKUP_DIR)) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        resumed = _run(task, run_dir)
    _assert_identical(resumed, reference)
    _assert_clean(run_dir)


@pytest.mark.parametrize("damage, message", [
    # The reproducer: a kill inside BackupAndRestore's in-place write left a
    # truncated latest.weights.h5; every rerun used to fail with OSError.
    ("truncated", "does not load"),
    pytest.param("weights newer than metadata", "newer than training_metadata.json", marks=SLOW),
    pytest.param("metadata without weights", "training_metadata.json without latest.weights.h5", marks=SLOW),
    pytest.param("weights without metadata", "latest.weights.h5 without training_metadata.json", marks=SLOW),
    pytest.param("unparsable metadata", "training_metadata.json: unreadable", marks=SLOW),
])
def test_damaged_legacy_backup_restarts_with_a_warning(task, reference, interrupted, tmp_path,
                                                       damage, message):
    run_dir, weights, metadata = _legacy(
        interrupted, tmp_path,
        metadata_after_weights=damage != "weights newer than metadata")
    if damage == "truncated":
        stamp = os.stat(weights).st_mtime_ns
        _truncate(weights)
        os.utime(weights, ns=(stamp, stamp))  # As if truncated before the metadata was written.
    elif damage == "metadata without weights":
        weights.unlink()
    elif damage == "weights without metadata":
        metadata.unlink()
    elif damage == "unparsable metadata":
        metadata.write_text('{"epoch": ')
    with pytest.warns(RuntimeWarning, match=message) as caught:
        resumed = _run(task, run_dir)
    assert "restarting this run from scratch" in _runtime_warnings(caught)
    _assert_identical(resumed, reference)
    _assert_clean(run_dir)


# --- real processes killed by SIGKILL ------------------------------------------

DRIVER = os.path.join(os.path.dirname(__file__), "_crash_driver.py")
SORT_ARGV = ["sort", "--n", "3", "--steps", "3", "--eval-every", "1", "--batch-size", "2",
             "--eval-sets", "4", "--seeds", "0", "--newton", "none", "--verbose", "0",
             "--no-xla"]
# The perturbed optimizer's loss draws noise: its seed states are a file of the run.
PERTURBED_PATH_ARGV = ["path", "--method", "perturbed", "--samples", "2", "--newton", "fisher",
                       "--grid-size", "3", "--train-maps", "4", "--eval-maps", "2",
                       "--batch-size", "2", "--steps", "3", "--eval-every", "1", "--seeds", "0",
                       "--verbose", "0", "--no-xla"]


def _environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_NEWTON_KILL")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(training.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(root),
                                                      env.get("PYTHONPATH")]))
    return env


def _results(output_dir):
    """What a run must reproduce: every record but its timings, and the table."""
    with open(os.path.join(output_dir, "results.json"), encoding="utf-8") as stream:
        runs = json.load(stream)["runs"]
    with open(os.path.join(output_dir, "results.md"), encoding="utf-8") as stream:
        table = stream.read()
    return [_comparable(run) for run in runs], table


def _assert_finished_cleanly(output_dir):
    for root, folders, names in os.walk(output_dir):
        assert training.BACKUP_DIR not in folders, root
        assert not [n for n in names if n.startswith(".tmp-")], root
        if training.RECORD_FILE in names:
            assert training.FINAL_WEIGHTS_FILE in names


def _drive(tmp_path, argv, points, timeout):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"argv": argv, "root": str(tmp_path), "points": points}))
    started = time.perf_counter()
    subprocess.run([sys.executable, DRIVER, str(config)], env=_environment(), check=True,
                   timeout=timeout)
    report = json.loads((tmp_path / "report.json").read_text())
    report["seconds"] = time.perf_counter() - started
    return report


def _assert_every_kill_resumed(report, specs):
    assert report["reference_run"] == {"code": 0}
    expected = _results(report["reference"])
    kills = [c for c in report["children"] if "signal" in c["ended"]]
    for child in report["children"]:
        assert child["ended"] in ({"signal": signal.SIGKILL}, {"code": 0}), child
    assert report["not_reached"] == []
    assert {c["spec"] for c in kills} == set(specs)
    for folder in report["folders"]:
        assert _results(folder["output_dir"]) == expected, folder
        _assert_finished_cleanly(folder["output_dir"])
    warned = sum(bool(c["warnings"]) for c in report["children"])
    print(f"\n{len(kills)} SIGKILLs at {len(set(specs))} specs ({len(report['points'])} "
          f"points) in {len(report['folders'])} run folders, {len(report['children'])} "
          f"processes, {warned} printed a warning, {report['seconds']:.0f} s")


@pytest.mark.slow
def test_cli_killed_at_every_point_resumes_to_the_same_table(tmp_path):
    # Every point of the run (inside and around every write of history,
    # backup weights and manifest, pruning, final weights, record and the
    # results files, and mid-epoch), on its first and its last visit; kills
    # are layered (a resumed process is killed again at the next point).
    report = _drive(tmp_path, SORT_ARGV, "every", timeout=3600)
    points = report["points"]
    for label in ("history", "backup-weights", "backup-manifest", "final-weights", "record",
                  "results.md", "results.json", "results.png"):
        for stage in ("before-write", "torn", "before-rename", "after-rename"):
            assert f"{label}:{stage}" in points
    assert points["backup-weights:torn"] == 3 and points["backup-prune:removed"] == 2
    specs = ([f"{name}:1" for name in points] +
             [f"{name}:{count}" for name, count in points.items() if count > 1])
    _assert_every_kill_resumed(report, specs)


@pytest.mark.slow
def test_cli_with_a_stochastic_loss_killed_around_its_seed_states(tmp_path):
    points = ["seed_states.json:torn:2", "seed_states.json:after-rename:2",
              "backup-weights:before-rename:2", "backup-manifest:after-rename:3"]
    report = _drive(tmp_path, PERTURBED_PATH_ARGV, points, timeout=1800)
    assert report["points"]["seed_states.json:after-rename"] == 3
    _assert_every_kill_resumed(report, points)


@pytest.mark.slow
def test_python_m_cli_killed_inside_the_weights_write_reruns_to_the_same_table(tmp_path):
    # The failure this layout removes: a kill inside the write of the
    # weights backup (here: the temporary file cut in half) used to leave a
    # truncated backup that made every rerun fail with OSError.
    command = [sys.executable, "-m", "keras_newton.bench", *SORT_ARGV, "--output-dir"]
    env = _environment()
    reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
    subprocess.run([*command, reference], env=env, check=True, timeout=900,
                   capture_output=True)
    died = subprocess.run([*command, killed], timeout=900, capture_output=True,
                          env=dict(env, KERAS_NEWTON_KILL_AT="backup-weights:torn:2"))
    assert died.returncode == -signal.SIGKILL
    backup = os.path.join(killed, "runs")
    assert any(n.startswith(".tmp-") for _, _, names in os.walk(backup) for n in names)
    rerun = subprocess.run([*command, killed], env=env, timeout=900, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    assert _results(killed) == _results(reference)
    _assert_finished_cleanly(killed)


def test_next_write_of_a_file_removes_the_temporary_file_a_kill_left(tmp_path):
    from keras_newton.bench import results

    stray = tmp_path / ".tmp-x.json-abc123.part"   # a write of x.json that was killed
    other = tmp_path / ".tmp-y.json-abc123.part"   # another file's: not ours to remove
    stray.write_text('{"half": ')
    other.write_text("")
    results.atomic_write_json(str(tmp_path / "x.json"), {"whole": 1})
    assert sorted(os.listdir(tmp_path)) == [other.name, "x.json"]
    assert json.loads((tmp_path / "x.json").read_text()) == {"whole": 1}
