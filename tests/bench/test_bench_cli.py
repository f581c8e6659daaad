"""End-to-end smoke runs of every ``keras-newton-bench`` subcommand on tiny data."""

import csv
import json
import os

import pytest

from keras_newton.bench import cli, grid, overhead, results
from keras_newton.bench import task as task_lib

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


TINY_PATH = ["--grid-size", "3", "--n-iter", "3", "--train-maps", "4", "--eval-maps", "2",
             "--batch-size", "2", "--steps", "2", "--eval-every", "1", "--seeds", "0",
             "--verbose", "0", "--no-xla"]


def _record_built_models(monkeypatch, module):
    built = []
    original = module.build_variant_model

    def build(task, variant, *args, **kwargs):
        model = original(task, variant, *args, **kwargs)
        built.append((variant, model))
        return model

    monkeypatch.setattr(module, "build_variant_model", build)
    return built


def test_path_with_affordable_hessian_options(tmp_path, monkeypatch):
    built = _record_built_models(monkeypatch, grid)
    out = str(tmp_path / "path")
    cli.main(["path", "--method", "relaxed", "--loop", "for", "--newton", "hessian",
              "--hessian-rank", "2", "--hessian-samples", "2", "--output-dir", out,
              *TINY_PATH])
    (variant, model), = built
    estimate = model.step.estimate
    assert (model.step.curvature, estimate.rank, estimate.samples,
            estimate.refresh_every) == ("hessian", 2, 2, 1)
    assert model.step == variant.newton_step()
    assert "rank 2" in variant.name and "2 samples" in variant.name
    data = _check_outputs(out, "results", 1, "perfect_match")
    run, = data["runs"]
    assert (run["hessian_rank"], run["hessian_samples"], run["hessian_refresh_every"]) == (
        2, 2, 1)
    assert data["config"]["hessian_options"] == {"hessian_rank": 2, "hessian_samples": 2}


# Slow: an XLA compile of the while-loop path and its sketch; the same sketch
# under XLA is checked against the Jacobian Hessian in test_affordable_hessian.
@pytest.mark.slow
def test_path_hessian_sketch_from_finite_differences_through_while_loops_under_xla(
        tmp_path, monkeypatch):
    built = _record_built_models(monkeypatch, grid)
    out = str(tmp_path / "path_fd")
    tiny_xla = [flag for flag in TINY_PATH if flag != "--no-xla"]
    cli.main(["path", "--method", "relaxed", "--no-unroll", "--newton", "hessian",
              "--hessian-rank", "2", "--hessian-products", "finite_differences",
              "--output-dir", out, *tiny_xla])
    (variant, model), = built
    assert (model.step.estimate.rank, model.step.estimate.products) == (2, "finite_differences")
    assert model.jit_compile and model._newton_losses.unroll is False
    assert "finite differences" in variant.name
    run, = _check_outputs(out, "results", 1, "perfect_match")["runs"]
    assert run["hessian_products"] == "finite_differences"


def test_autodiff_hessian_through_while_loops_is_refused_under_xla(capsys):
    # Second derivatives of a while loop do not compile; finite differences do.
    error = _rejected(["path", "--no-unroll", "--newton", "hessian", "--hessian-rank", "2"],
                      capsys)
    assert "--no-unroll" in error and "finite_differences" in error


def test_hessian_options_go_to_the_hessian_variant_only():
    args = cli.build_parser().parse_args(
        ["grid", "--task", "sort", "--newton", "none", "hessian", "fisher",
         "--hessian-refresh-every", "3"])
    assert cli.hessian_options(args) == {"hessian_refresh_every": 3}
    assert task_lib.hessian_options_for("fisher", {"hessian_refresh_every": 3}) == {}
    assert task_lib.hessian_options_for("hessian", {"hessian_rank": 2}) == {"hessian_rank": 2}
    with pytest.raises(ValueError, match="hessian_rank"):
        task_lib.Variant.from_flags("v", newton="fisher", hessian_rank=2)


def test_overhead_subcommand(tmp_path, capsys, monkeypatch):
    built = _record_built_models(monkeypatch, overhead)
    out = str(tmp_path / "overhead")
    cli.main(["overhead", "--tasks", "sort", "--rounds", "2", "--n", "3", "--batch-size", "2",
              "--eval-sets", "2", "--no-xla", "--output-dir", out])
    measured = json.load(open(os.path.join(out, "results_overhead.json")))["measured"]
    result = next(iter(measured.values()))
    ratios = result["ratios"]
    assert ratios["none"] == 1.0 and set(ratios) == {"none", "hessian", "fisher"}
    assert all(r > 0 for r in ratios.values())
    # Each Newton variant with its own (sorting preset) λ, not the Hessian's.
    assert result["dampings"] == {"hessian": 0.01, "fisher": 0.001}
    assert {v.newton: v.damping for v, _ in built if v.is_newton} == result["dampings"]
    assert {v.newton: m.step.damping.value() for v, m in built if v.is_newton} == result["dampings"]
    printed = capsys.readouterr().out
    table = results.parse_markdown_table(printed[printed.rindex("| task |"):])
    assert [row["variant"] for row in table] == ["none", "hessian", "fisher"]
    for row in table:
        first_step = float(row["first step incl. compile (s)"])
        assert first_step == pytest.approx(result["compile_seconds"][row["variant"]], abs=0.006)
        assert float(row["ratio to baseline"]) > 0


def _rejected(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["path", "--loop", "while", "--newton", "hessian"],
    ["path", "--method", "relaxed", "--loop", "while", "--newton", "none",
     "elementwise_hessian"],
    ["grid", "--task", "path", "--methods", "method=relaxed,loop=while",
     "--newton", "hessian"],
    ["overhead", "--tasks", "path", "--loop", "while"],
])
def test_while_loop_hessian_under_xla_is_rejected_up_front(command, capsys):
    error = _rejected(command, capsys)
    assert "tf.while_loop" in error and "--no-xla" in error and "--loop for" in error


def test_while_loop_hessian_runs_without_xla_and_fisher_with_xla():
    parser = cli.build_parser()
    for argv in (["path", "--loop", "while", "--newton", "hessian", "--no-xla"],
                 ["path", "--loop", "while", "--newton", "none", "fisher"],
                 ["path", "--loop", "for", "--newton", "hessian"],
                 ["path", "--method", "smoothing", "--loop", "while", "--newton", "hessian"]):
        cli.check_args(parser.parse_args(argv))  # no error


def test_bad_hessian_options_are_rejected(capsys):
    assert "add hessian to --newton" in _rejected(
        ["sort", "--newton", "fisher", "--hessian-rank", "2"], capsys)
    assert "hessian_samples must be None or an int >= 1" in _rejected(
        ["sort", "--newton", "hessian", "--hessian-samples", "0"], capsys)
    # Monte-Carlo losses bring their own Hessian estimate: subsample it, not sketch it.
    assert "hessian_samples instead" in _rejected(
        ["path", "--method", "perturbed", "--newton", "hessian", "--hessian-rank", "2"],
        capsys)


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        cli.main(["sort", "--newton", "newtonish"])
    with pytest.raises(ValueError, match="key=value"):
        cli.parse_method("sorter")
    assert cli.parse_method("sorter=diff_sort,steepness=5,tau=0.5") == {
        "sorter": "diff_sort", "steepness": 5, "tau": 0.5}


def test_workers_share_the_runs_and_give_the_single_process_result(tmp_path):
    args = ["grid", "--task", "sort", "--methods", "sorter=neural_sort", "--newton", "none",
            "fisher", "--no-xla", *TINY_SORT[:-4], "--seeds", "0", "--verbose", "0"]
    assert cli.main([*args, "--output-dir", str(tmp_path / "one")]) == 0
    assert cli.main([*args, "--output-dir", str(tmp_path / "two"), "--workers", "2"]) == 0
    one = json.load(open(tmp_path / "one" / "results.json"))["runs"]
    two = json.load(open(tmp_path / "two" / "results.json"))["runs"]
    assert [r["variant"] for r in two] == [r["variant"] for r in one]
    assert [r["weights_checksum"] for r in two] == [r["weights_checksum"] for r in one]
    # Runs are claimed as workers go (which worker trains what depends on
    # timing, see test_bench_workers.py): the worker ran, trained no run
    # twice, and left no claim behind.
    log = open(tmp_path / "two" / "worker1.log").read()
    assert log.count("== ") <= 2 and "Traceback" not in log
    assert not list((tmp_path / "two").rglob(".claim-*"))


def test_single_task_subcommands_run_in_one_process_under_quick():
    # sort/path/classify take no --workers: a --quick preset with workers must
    # not spawn worker processes (they would get a --shard these parsers lack).
    for argv in (["sort", "--quick"], ["path", "--quick"], ["classify", "--quick"]):
        assert cli._workers(cli.build_parser().parse_args(argv)) == 1
    assert cli._workers(cli.build_parser().parse_args(["study", "--quick"])) == 2


def test_main_job_plan_is_the_papers_regime():
    # README command 1 without running it: n = 10, 100 sets per batch, five
    # seeds for every row, the Cauchy control, each variant at its own rate,
    # two workers.
    args = cli.build_parser().parse_args(["grid", "--quick"])
    methods = cli._method_configs(args)
    config = cli.task_config(args, "sort")
    assert (config["n"], config["batch_size"], config["scorer"]) == (10, 100, "mlp")
    assert cli._workers(args) == 2
    runs, configs = grid.plan_grid("sort", methods, ["none"], [0], "unused",
                                   base_config=config)
    by_method = {c["method"]: c for c in configs}
    for method in ("neural_sort(τ=1)", "soft_sort(τ=1)"):
        assert by_method[method]["newton"] == ["none", "hessian", "fisher"]
        assert len(by_method[method]["seeds"]) >= 5
    cauchy = by_method["diff_sort(cauchy, β=10)"]
    assert cauchy["newton"][0] == "none" and len(cauchy["newton"]) >= 2
    assert len(cauchy["seeds"]) >= 5
    assert all(set(c["learning_rates"]) == set(c["newton"]) for c in configs)
    assert len(runs) == sum(len(c["newton"]) * len(c["seeds"]) for c in configs)
    # Flags still override the preset's own plan.
    args = cli.build_parser().parse_args(["grid", "--quick", "--seeds", "7", "--newton",
                                          "none", "--learning-rate", "0.02"])
    assert all(m.get("seeds") is None and m.get("newton") is None
               and m.get("learning_rates") is None for m in cli._method_configs(args))


@pytest.mark.slow
def test_main_job_quick_grid(tmp_path):
    # README command 1 as a test (about ten minutes on 2 cores).
    out = str(tmp_path / "main")
    result = cli.main(["grid", "--quick", "--output-dir", out, "--verbose", "0"])
    assert result == 0
    table = results.parse_markdown_table(open(os.path.join(out, "results.md")).read())
    assert len(table) == 8
