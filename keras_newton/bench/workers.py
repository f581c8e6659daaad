"""Parallel workers for grids and studies: one process per core, shards of the runs.

A grid's runs are independent and each is resumable from its own folder, so
``k`` processes can share them: worker ``i`` trains the runs ``j`` with
``j % k == i`` (``--shard i/k``), and the calling process, once all workers
are done, runs the same command without a shard, finds every run finished
and writes the results files. Small models leave a core partly idle between
their XLA steps, so two workers on two cores finish a grid sooner than one
process; results do not depend on the number of workers (tested).

Workers write their progress to ``<output_dir>/worker<i>.log``; a failing
worker stops the command with its exit code and log path.

Example:
  >>> run_sharded(["grid", "--quick"], 2, "bench_results/x", own_shard)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Sequence

import keras_newton


def worker_command(argv: Sequence[str], index: int, count: int) -> list[str]:
    """The command line of worker ``index`` of ``count``.

    Example:
      >>> worker_command(["grid", "--quick"], 1, 2)[-4:]
      ['grid', '--quick', '--shard', '1/2']
    """
    return [sys.executable, "-m", "keras_newton.bench", *argv, "--shard", f"{index}/{count}"]


def run_sharded(argv: Sequence[str], workers: int, log_dir: str,
                own_shard: Callable[[tuple[int, int]], object]) -> None:
    """Starts workers ``1 … workers-1``, runs shard 0 here, waits for all.

    Args:
      argv: the command line (without ``--shard``) every worker repeats.
      workers: number of processes, including this one.
      log_dir: where ``worker<i>.log`` files go.
      own_shard: runs shard ``(0, workers)`` in this process.

    Raises:
      RuntimeError: when a worker exits with a non-zero code.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    os.makedirs(log_dir, exist_ok=True)
    # Workers import the same keras_newton as this process.
    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_newton.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    processes = []
    for index in range(1, workers):
        log_path = os.path.join(log_dir, f"worker{index}.log")
        with open(log_path, "w", encoding="utf-8") as log:
            processes.append((subprocess.Popen(worker_command(argv, index, workers),
                                               stdout=log, stderr=subprocess.STDOUT,
                                               env=env), log_path))
    try:
        own_shard((0, workers))
    except BaseException:
        for process, _ in processes:
            process.kill()
        raise
    failed = [(p.wait(), path) for p, path in processes]
    failed = [(code, path) for code, path in failed if code != 0]
    if failed:
        raise RuntimeError("; ".join(f"worker exited with {code}, see {path}"
                                     for code, path in failed))


__all__ = ["run_sharded", "worker_command"]
