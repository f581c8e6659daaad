"""End-to-end smoke runs of every ``keras-newton-bench`` subcommand on tiny data."""

import csv
import json
import os

import pytest

from keras_newton.bench import cli, results

TINY_SORT = ["--n", "3", "--steps", "2", "--eval-every", "1", "--batch-size", "2",
             "--eval-sets", "4", "--seeds", "0", "--verbose", "0"]


def _check_outputs(out_dir, name, rows, metric):
    table = results.parse_markdown_table(open(os.path.join(out_dir, f"{name}.md")).read())
    assert len(table) == rows
    for row in table:
        assert "±" in row[f"{metric} (%)"]
    with open(os.path.join(out_dir, f"{name}.csv")) as stream:
        assert len(list(csv.DictReader(stream))) == rows
    data = json.load(open(os.path.join(out_dir, f"{name}.json")))
    assert "tensorflow" in data["versions"]
    for run in data["runs"]:
        assert 0.0 <= run[metric] <= 1.0
        assert [h["step"] for h in run["history"]] == [1, 2]
    with open(os.path.join(out_dir, f"{name}.png"), "rb") as stream:
        assert stream.read(4) == b"\x89PNG"
    return data


def test_sort_subcommand_baseline_and_newton(tmp_path, capsys):
    out = str(tmp_path / "sort")
    assert cli.main(["sort", "--sorter", "neural_sort", "--newton", "none", "hessian",
                     "--output-dir", out, "--no-xla", *TINY_SORT]) == 0
    data = _check_outputs(out, "results", 2, "exact_match")
    assert [r["newton"] for r in data["runs"]] == ["none", "hessian"]
    assert data["runs"][1]["damping"] == 0.01  # the sorting preset λ of Newton-Hessian
    assert "neural_sort(τ=1) · Newton-Hessian" in capsys.readouterr().out


def test_grid_subcommand_methods(tmp_path):
    out = str(tmp_path / "grid")
    cli.main(["grid", "--task", "sort", "--methods", "sorter=neural_sort",
              "sorter=diff_sort,relaxation=cauchy,steepness=5", "--newton", "fisher",
              "--damping", "0.1", "--output-dir", out, "--name", "g", "--no-xla", *TINY_SORT])
    data = _check_outputs(out, "g", 2, "exact_match")
    methods = [m["method"] for m in data["config"]["methods"]]
    assert methods == ["neural_sort(τ=1)", "diff_sort(cauchy, β=5)"]
    assert data["config"]["jit_compile"] is False
    assert {r["damping"] for r in data["runs"] if r["newton"] == "fisher"} == {0.1}


def test_classify_subcommand_with_xla(tmp_path):
    out = str(tmp_path / "classify")
    cli.main(["classify", "--model", "M1", "--optimizer", "adam", "--newton", "none",
              "elementwise_hessian", "--steps", "2", "--eval-every", "1", "--batch-size", "8",
              "--seeds", "0", "--verbose", "0", "--output-dir", out])
    data = _check_outputs(out, "results", 2, "accuracy")
    assert data["config"]["jit_compile"] is True  # XLA is the default


def test_path_subcommand(tmp_path):
    out = str(tmp_path / "path")
    cli.main(["path", "--method", "relaxed", "--loop", "for", "--distance", "l2",
              "--newton", "fisher", "--grid-size", "4", "--n-iter", "4", "--train-maps", "4",
              "--eval-maps", "2", "--batch-size", "2", "--steps", "2", "--eval-every", "1",
              "--seeds", "0", "--verbose", "0", "--no-xla", "--output-dir", out])
    data = _check_outputs(out, "results", 1, "perfect_match")
    assert all(r["cost_ratio"] >= 1.0 - 1e-6 for r in data["runs"])


def test_overhead_subcommand(tmp_path, capsys):
    out = str(tmp_path / "overhead")
    cli.main(["overhead", "--tasks", "sort", "--rounds", "2", "--n", "3", "--batch-size", "2",
              "--eval-sets", "2", "--no-xla", "--output-dir", out])
    measured = json.load(open(os.path.join(out, "results_overhead.json")))["measured"]
    ratios = next(iter(measured.values()))["ratios"]
    assert ratios["none"] == 1.0 and set(ratios) == {"none", "hessian", "fisher"}
    assert all(r > 0 for r in ratios.values())
    assert "ratio to baseline" in capsys.readouterr().out


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        cli.main(["sort", "--newton", "newtonish"])
    with pytest.raises(ValueError, match="key=value"):
        cli.parse_method("sorter")
    assert cli.parse_method("sorter=diff_sort,steepness=5,tau=0.5") == {
        "sorter": "diff_sort", "steepness": 5, "tau": 0.5}


@pytest.mark.slow
def test_main_job_quick_grid(tmp_path):
    # README command 1 as a test (a few minutes on 2 cores).
    out = str(tmp_path / "main")
    result = cli.main(["grid", "--quick", "--output-dir", out, "--verbose", "0"])
    assert result == 0
    _check_outputs(out, "results", 6, "exact_match")
