"""How parallel workers share a grid's runs (keras_newton.bench.workers)."""

import os

import pytest

from keras_newton.bench import workers

KEYS = ["ns/base"] * 5 + ["ns/hessian"] * 5 + ["cauchy/base"] * 3 + ["cauchy/fisher"] * 3


def _interleave(generators, done):
    """Advances the workers in turn, as if each run took equally long.

    A worker's run is finished (its record exists, it joins ``done``) when
    the worker asks for its next one; until then other workers see it claimed.
    """
    taken = {index: [] for index in range(len(generators))}
    active = dict(enumerate(generators))
    while active:
        for index, generator in list(active.items()):
            if taken[index]:
                done.add(taken[index][-1])
            try:
                taken[index].append(next(generator))
            except StopIteration:
                del active[index]
    return taken


def _switches(indices):
    return sum(KEYS[a] != KEYS[b] for a, b in zip(indices, indices[1:]))


def test_choose_next_keeps_to_the_compiled_variant_then_the_largest_group():
    available = set(range(len(KEYS)))
    assert workers.choose_next(KEYS, available, None) == 0
    assert workers.choose_next(KEYS, available, None, from_end=True) == 5  # last of the 5s
    assert workers.choose_next(KEYS, available - {0}, "ns/base") == 1
    assert workers.choose_next(KEYS, {1, 11, 14}, "ns/hessian") == 1  # largest: ns/base
    # A variant another worker is training is left to it while others remain.
    assert workers.choose_next(KEYS, available, None, busy={"ns/base", "ns/hessian"}) == 10


def test_claimed_runs_are_trained_once_and_each_variant_mostly_by_one_worker(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setenv(workers.CLAIM_TOKEN_ENV, "t1")
    run_dirs = [str(tmp_path / f"run{j}") for j in range(len(KEYS))]
    done = {3}  # a finished run (its record exists) is nobody's
    taken = _interleave([workers.shard_runs(run_dirs, KEYS, (i, 2), done.__contains__)
                         for i in range(2)], done)
    everything = sorted(taken[0] + taken[1])
    assert everything == [j for j in range(len(KEYS)) if j != 3]
    # 4 variants over 2 workers: at most one is split, so at most 2 + 1 switches in all.
    assert _switches(taken[0]) + _switches(taken[1]) <= 3
    assert abs(len(taken[0]) - len(taken[1])) <= 1
    assert not any(name.startswith(".claim") for d in run_dirs if os.path.isdir(d)
                   for name in os.listdir(d))


def test_claims_of_another_command_are_ignored(tmp_path, monkeypatch):
    run_dirs = [str(tmp_path / f"run{j}") for j in range(4)]
    os.makedirs(run_dirs[0])
    open(os.path.join(run_dirs[0], ".claim-killed"), "w").close()
    monkeypatch.setenv(workers.CLAIM_TOKEN_ENV, "new")
    done = set()
    assert _interleave([workers.shard_runs(run_dirs, ["a"] * 4, (0, 1), done.__contains__)],
                       done)[0] == [0, 1, 2, 3]


def test_a_claim_taken_by_another_worker_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv(workers.CLAIM_TOKEN_ENV, "t2")
    run_dirs = [str(tmp_path / f"run{j}") for j in range(3)]
    done = set()
    mine = workers.shard_runs(run_dirs, ["a"] * 3, (0, 2), done.__contains__)
    assert next(mine) == 0
    done.add(0)
    os.makedirs(run_dirs[1])
    open(os.path.join(run_dirs[1], ".claim-t2"), "w").close()  # worker 1 took run 1
    assert list(mine) == [2]


@pytest.mark.parametrize("shard, expected", [((0, 2), [0, 2, 4]), ((1, 2), [1, 3])])
def test_a_shard_given_by_hand_takes_every_kth_run(tmp_path, monkeypatch, shard, expected):
    monkeypatch.delenv(workers.CLAIM_TOKEN_ENV, raising=False)
    run_dirs = [str(tmp_path / f"run{j}") for j in range(5)]
    assert list(workers.shard_runs(run_dirs, ["a"] * 5, shard, lambda j: False)) == expected
