"""Kills real ``keras-newton-bench`` runs with SIGKILL and reruns them (test helper).

Usage: ``python tests/bench/_crash_driver.py CONFIG.json``; the config holds ``argv``
(the CLI arguments without ``--output-dir``), ``root`` (a folder) and ``points``
(``"every"`` or a list of ``<point>:<count>`` specs). TensorFlow is imported
once; every run is a child process forked from this one that calls the CLI's
``main`` (no TensorFlow work happens here before forking), so each child pays
the tracing but not the import.

The driver first makes the uninterrupted reference run with
``KERAS_NEWTON_KILL_LOG`` set, which lists the kill points a run passes, in
order. ``"every"`` means every point at its first visit, in the order of the
run, then every point visited more than once at its last visit. Kills are
layered: after a child dies, the next child resumes the same output folder
and is killed at the next spec (counts are per process). When a child
finishes instead (its spec lies behind where it resumed), that folder is
complete, and the spec is tried again on a fresh folder; a spec that a fresh
run does not reach is reported. The last folder is finished by a rerun
without a kill. ``<root>/report.json`` has the reference folder, the points
seen, every child (spec, folder, exit) and the ``RuntimeWarning`` lines the
children printed, per folder. The test compares the folders' files.
"""

import collections
import json
import os
import sys


def _child(argv, output_dir, log_path, kill_at=None, kill_log=None):
    from keras_newton.bench import _killpoint, cli

    pid = os.fork()
    if pid == 0:  # The child: one CLI run, then exit without cleanup.
        code = 70
        try:
            os.environ.pop(_killpoint.KILL_AT_ENV, None)
            os.environ.pop(_killpoint.KILL_LOG_ENV, None)
            if kill_at:
                os.environ[_killpoint.KILL_AT_ENV] = kill_at
            if kill_log:
                os.environ[_killpoint.KILL_LOG_ENV] = kill_log
            handle = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(handle, 1)
            os.dup2(handle, 2)
            code = cli.main([*argv, "--output-dir", output_dir])
        except BaseException:  # noqa: BLE001 - reported through the exit code
            import traceback

            traceback.print_exc()
            code = 71
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"code": os.WEXITSTATUS(status)}


def _warnings(log_path):
    with open(log_path, encoding="utf-8", errors="replace") as stream:
        return [line.strip() for line in stream if "RuntimeWarning" in line]


def main(config_path):
    with open(config_path, encoding="utf-8") as stream:
        config = json.load(stream)
    import tensorflow  # noqa: F401 - imported once, before forking
    from keras_newton.bench import cli  # noqa: F401

    root, argv = config["root"], config["argv"]
    reference = os.path.join(root, "reference")
    kill_log = os.path.join(root, "points.log")
    report = {"reference": reference,
              "reference_run": _child(argv, reference, os.path.join(root, "reference.log"),
                                      kill_log=kill_log)}
    with open(kill_log, encoding="utf-8") as stream:
        names = [line.strip() for line in stream if line.strip()]
    visits = collections.Counter(names)
    report["points"] = dict(visits)
    if config["points"] == "every":
        order = list(dict.fromkeys(names))
        specs = [f"{name}:1" for name in order]
        specs += [f"{name}:{visits[name]}" for name in order if visits[name] > 1]
    else:
        specs = list(config["points"])
    report["children"], report["folders"], report["not_reached"] = [], [], []
    folder = {"output_dir": None, "kills": 0, "warnings": []}

    def new_folder():
        folder.update(output_dir=os.path.join(root, f"run{len(report['folders']):03d}"),
                      kills=0, warnings=[])
        report["folders"].append(folder.copy())

    def child(spec):
        index = len(report["children"])
        log_path = os.path.join(root, f"child{index:03d}.log")
        ended = _child(argv, folder["output_dir"], log_path, kill_at=spec)
        found = _warnings(log_path)
        report["children"].append({"spec": spec, "output_dir": folder["output_dir"],
                                   "ended": ended, "warnings": found})
        folder["warnings"] += found
        folder["kills"] += "signal" in ended
        report["folders"][-1] = folder.copy()
        _write(root, report)
        return ended

    new_folder()
    for spec in specs:
        if "signal" in child(spec):
            continue
        # Finished: this folder is done; try the spec from the start.
        new_folder()
        if "signal" not in child(spec):
            report["not_reached"].append(spec)
            new_folder()
    if not any(c["output_dir"] == folder["output_dir"] for c in report["children"]):
        report["folders"].pop()  # Nothing was run in it.
    else:
        for _ in range(3):  # Finish the last folder.
            if child(None) == {"code": 0}:
                break
    _write(root, report)


def _write(root, report):
    with open(os.path.join(root, "report.json"), "w", encoding="utf-8") as stream:
        json.dump(report, stream, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
