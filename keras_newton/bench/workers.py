"""Parallel workers for grids and studies: one process per core, shards of the runs.

A grid's runs are independent and each is resumable from its own folder, so
``k`` processes can share them (``--shard i/k``), and the calling process,
once all workers are done, runs the same command without a shard, finds
every run finished and writes the results files. Small models leave a core
partly idle between their XLA steps, so two workers on two cores finish a
grid sooner than one process; results do not depend on the number of
workers (tested).

Workers started together (:func:`run_sharded`) share a claim token and take
runs as they go: a worker creates ``.claim-<token>`` in a run's folder
(atomically; the first wins), keeps to the runs of the variant it has
compiled, and otherwise starts the variant with the most unclaimed runs
(worker 0 from the front, worker 1 from the back), so each variant is
compiled about once and fast workers take more runs. A ``--shard`` given by
hand (no token) trains the runs ``j`` with ``j % k == i``. A claim left by
a killed command has another token and is ignored.

Workers write their progress to ``<output_dir>/worker<i>.log``; a failing
worker stops the command with its exit code and log path.

Example:
  >>> run_sharded(["grid", "--quick"], 2, "bench_results/x", own_shard)  # doctest: +SKIP
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from typing import Callable, Hashable, Iterator, Sequence

import keras_newton
from keras_newton.bench import portable_numerics


CLAIM_TOKEN_ENV = "KERAS_NEWTON_CLAIM_TOKEN"


def choose_next(keys: Sequence[Hashable], available: set[int], current: Hashable | None,
                from_end: bool = False, busy: set | frozenset = frozenset()) -> int:
    """The run a worker takes next, of the ``available`` indices (non-empty).

    The next run of ``current`` (the variant the worker has compiled) if any;
    else the first run of the variant with the most available runs among
    those no other worker is training (``busy``) if there are such, ties
    going to the first variant (or the last, ``from_end``).

    Example:
      >>> keys = ["a", "a", "b", "b", "b"]
      >>> choose_next(keys, {0, 1, 2, 3, 4}, None), choose_next(keys, {0, 1, 4}, "b")
      (2, 4)
    """
    same = [j for j in available if keys[j] == current]
    if same:
        return min(same)
    firsts: dict = {}
    for j in sorted(available):
        firsts.setdefault(keys[j], j)
    counts = collections.Counter(keys[j] for j in available)
    groups = sorted(firsts, key=firsts.get, reverse=from_end)
    groups = [key for key in groups if key not in busy] or groups
    return firsts[max(groups, key=counts.__getitem__)]  # max keeps the first of ties


def _claim_path(run_dir: str, token: str) -> str:
    return os.path.join(run_dir, f".claim-{token}")


def shard_runs(run_dirs: Sequence[str], keys: Sequence[Hashable], shard: tuple[int, int],
               finished: Callable[[int], bool]) -> Iterator[int]:
    """Indices of the runs worker ``shard[0]`` of ``shard[1]`` trains, in order.

    With the claim token of :func:`run_sharded` in the environment, runs are
    claimed as the worker goes (see the module docstring); a claim is
    removed when the consumer asks for the next run. Without it, the runs
    ``j % k == i``.
    """
    index, count = shard
    token = os.environ.get(CLAIM_TOKEN_ENV)
    if not token:
        yield from (j for j in range(len(run_dirs)) if j % count == index)
        return
    current, handed = None, set()
    while True:
        claimed = {j for j, run_dir in enumerate(run_dirs)
                   if os.path.exists(_claim_path(run_dir, token))}
        available = {j for j in range(len(run_dirs))
                     if j not in claimed and j not in handed and not finished(j)}
        if not available:
            return
        # Variants other workers are training right now (claimed, unfinished).
        busy = {keys[j] for j in claimed if not finished(j)}
        j = choose_next(keys, available, current, from_end=index % 2 == 1, busy=busy)
        os.makedirs(run_dirs[j], exist_ok=True)
        try:
            os.close(os.open(_claim_path(run_dirs[j], token),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue  # another worker was first
        current = keys[j]
        handed.add(j)
        yield j
        os.remove(_claim_path(run_dirs[j], token))


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
    token = f"{os.getpid()}-{time.time_ns()}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        **{CLAIM_TOKEN_ENV: token})
    if not portable_numerics.in_force()["portable"]:
        # Workers must round as this process does: a process that is not on
        # portable numerics (a test, a notebook) keeps its workers native too.
        env[portable_numerics.NATIVE_ENV] = "1"
    processes = []
    for index in range(1, workers):
        log_path = os.path.join(log_dir, f"worker{index}.log")
        with open(log_path, "w", encoding="utf-8") as log:
            processes.append((subprocess.Popen(worker_command(argv, index, workers),
                                               stdout=log, stderr=subprocess.STDOUT,
                                               env=env), log_path))
    previous = os.environ.get(CLAIM_TOKEN_ENV)
    os.environ[CLAIM_TOKEN_ENV] = token
    try:
        own_shard((0, workers))
    except BaseException:
        for process, _ in processes:
            process.kill()
        raise
    finally:
        if previous is None:
            os.environ.pop(CLAIM_TOKEN_ENV, None)
        else:
            os.environ[CLAIM_TOKEN_ENV] = previous
    failed = [(p.wait(), path) for p, path in processes]
    failed = [(code, path) for code, path in failed if code != 0]
    if failed:
        raise RuntimeError("; ".join(f"worker exited with {code}, see {path}"
                                     for code, path in failed))


__all__ = ["CLAIM_TOKEN_ENV", "choose_next", "run_sharded", "shard_runs", "worker_command"]
