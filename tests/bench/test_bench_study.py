"""The efficacy study (``keras-newton-bench study``): tiny end-to-end runs, resume, selection."""

import json
import math
import os

import numpy as np
import pytest

from keras_newton.bench import cli, grid, study

TINY = ["--n", "3", "--steps", "4", "--eval-every", "2", "--batch-size", "3",
        "--eval-sets", "6", "--scorer", "mlp", "--seeds", "0", "1", "--verbose", "0",
        "--no-xla", "--dampings", "0.1", "--budgets", "2", "4",
        "--methods", "sorter=neural_sort", "--newton", "hessian"]


class Killed(Exception):
    pass


def _study(out, *extra):
    return cli.main(["study", "--output-dir", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    assert _study(out) == 0
    return out


def test_study_writes_sweep_length_and_diagnostics(reference):
    sweep = json.load(open(reference / "sweep" / "sweep.json"))
    variants = [s["variant"] for s in sweep["summary"]]
    assert len(variants) == 2  # baseline and Newton-Hessian at λ = 0.1
    best = json.load(open(reference / "sweep" / "sweep_best.json"))
    assert {(b["newton"], b["damping"]) for b in best["best"]} == {("hessian", 0.1)}
    assert [g["steps"] for g in best["gains_by_step"][0]["budgets"]] == [2, 4]
    for entry in sweep["summary"]:
        assert len(entry["seeds"]) == 2
        assert (entry["p_value"] is None) == (entry["newton"] == "none")
    markdown = open(reference / "sweep" / "sweep.md").read()
    assert "Best λ per method and variant" in markdown
    for name in ("sweep_lambda.png", "sweep_diagnostics.png"):
        assert open(reference / "sweep" / name, "rb").read(4) == b"\x89PNG"
    gains = json.load(open(reference / "length" / "gain_vs_steps.json"))
    assert [b["steps"] for b in gains[0]["budgets"]] == [2, 4]
    length_runs = json.load(open(reference / "length" / "length.json"))["runs"]
    assert {r["config"]["steps"] for r in length_runs} == {4}
    for run in length_runs:
        for entry in run["history"]:
            assert math.isfinite(entry["diag_score_std"])
    assert any(f.startswith("diagnostics_") for f in os.listdir(reference / "length"))


# Slow: a second tiny study that is killed and resumed; resuming single runs
# is covered by tests/test_bench_resume.py in the default suite.
@pytest.mark.slow
def test_study_resumes_after_a_kill(reference, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = grid.run_training

    def dies_on_third_run(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Killed()
        return original(*args, **kwargs)

    monkeypatch.setattr(grid, "run_training", dies_on_third_run)
    with pytest.raises(Killed):
        _study(tmp_path)
    monkeypatch.setattr(grid, "run_training", original)
    assert _study(tmp_path) == 0
    for part in ("sweep", "length"):
        want = json.load(open(reference / part / f"{part}.json"))["runs"]
        got = json.load(open(tmp_path / part / f"{part}.json"))["runs"]
        assert [r["variant"] for r in got] == [r["variant"] for r in want]
        np.testing.assert_allclose([r["weights_checksum"] for r in got],
                                   [r["weights_checksum"] for r in want], rtol=1e-6)


def test_length_part_runs_at_a_methods_own_damping_without_a_sweep(tmp_path):
    # No sweep/ folder: a λ given in the method entry is enough.
    args = [a for a in TINY if a not in ("sorter=neural_sort",)]
    args[args.index("--methods") + 1:args.index("--methods") + 1] = [
        "sorter=neural_sort,dampings=hessian:0.3"]
    assert cli.main(["study", "--output-dir", str(tmp_path), *args,
                     "--parts", "length"]) == 0
    assert not (tmp_path / "sweep").exists()
    runs = json.load(open(tmp_path / "length" / "length.json"))["runs"]
    assert sorted(r["newton"] for r in runs) == ["hessian", "hessian", "none", "none"]
    assert {r["damping"] for r in runs if r["newton"] == "hessian"} == {0.3}
    # Without its own λ the part still needs the finished sweep.
    with pytest.raises(RuntimeError, match="run --parts sweep first"):
        _study(tmp_path / "other", "--parts", "length")


def test_a_method_may_narrow_the_variants_of_the_sweep(tmp_path):
    config = {"n": 3, "steps": 2, "eval_every": 1, "batch_size": 2, "eval_sets": 4}
    runs = study.sweep_runs([{"sorter": "neural_sort"},
                             {"sorter": "soft_sort", "newton": "hessian"}],
                            ["hessian", "fisher"], [0.01, 1.0], [0], str(tmp_path), config)
    planned = [(r.method, r.variant.newton, r.variant.damping) for r in runs]
    assert planned.count(("soft_sort(τ=1)", "fisher", 0.01)) == 0
    assert planned.count(("soft_sort(τ=1)", "hessian", 1.0)) == 1
    assert planned.count(("neural_sort(τ=1)", "fisher", 1.0)) == 1
    assert len({r.run_dir for r in runs}) == len(runs) == 2 * 1 + 2 * 2 + 1 * 2


def _record(method, newton, damping, seed, val, test, history=None):
    return {"method": method, "newton": newton, "damping": damping, "seed": seed,
            "variant": f"{method} {newton} {damping}", "val_exact_match": val,
            "exact_match": test, "history": history or []}


def test_best_lambda_is_chosen_on_validation_not_test():
    # λ = 0.1 is best on test, λ = 1 on validation: the study must pick 1.
    records = [_record("m", "hessian", 0.1, s, val=0.20, test=0.90) for s in (0, 1)]
    records += [_record("m", "hessian", 1.0, s, val=0.30 + 0.01 * s, test=0.10) for s in (0, 1)]
    records += [_record("m", "fisher", 0.01, 0, val=0.5, test=0.5)]
    assert study.best_dampings(records) == {("m", "hessian"): 1.0, ("m", "fisher"): 0.01}


def test_gain_by_budget_selects_on_validation_within_each_budget():
    def history(values):
        return [{"step": 2 * (i + 1), "val_exact_match": v, "test_exact_match": t}
                for i, (v, t) in enumerate(values)]

    base = [_record("m", "none", None, s, 0, 0, history([(0.1, 0.1), (0.2, 0.2)]))
            for s in (0, 1)]
    newton = [_record("m", "hessian", 0.1, 0, 0, 0, history([(0.3, 0.5), (0.1, 0.9)])),
              _record("m", "hessian", 0.1, 1, 0, 0, history([(0.2, 0.3), (0.4, 0.4)]))]
    gains = study.gain_by_budget(base + newton, [2, 4])
    assert len(gains) == 1
    first, second = gains[0]["budgets"]
    # Budget 2: newton tests 0.5, 0.3 vs baseline 0.1, 0.1.
    assert first["delta"] == pytest.approx(0.4 - 0.1)
    # Budget 4: seed 0 keeps step 2 (better validation), seed 1 takes step 4.
    assert second["delta"] == pytest.approx((0.5 + 0.4) / 2 - 0.2)
    from scipy import stats

    assert second["p_value"] == pytest.approx(
        stats.ttest_ind([0.5, 0.4], [0.2, 0.2], equal_var=False).pvalue)


def test_damping_grid_is_the_papers_half_decades():
    grid_values = study.damping_grid()
    assert len(grid_values) == 13 and grid_values[0] == 0.001 and grid_values[-1] == 1000.0
    np.testing.assert_allclose(np.diff(np.log10(grid_values)), 0.5, atol=2e-3)
    assert study.damping_grid(1e-4, 1, 1) == [0.0001, 0.001, 0.01, 0.1, 1.0]
    with pytest.raises(ValueError):
        study.damping_grid(0, 1)
