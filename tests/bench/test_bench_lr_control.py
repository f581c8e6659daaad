"""The study's controls (issue 14): learning rate (``--parts lr``) and the ranking objective.

Pure-function tests on toy records (selection on validation, both baseline
comparisons, the files), planning, the sort task's ``objective``, and one
tiny end-to-end run of both controls through the CLI (resumed untouched).
"""

import csv
import json
import math
import os

import pytest
from scipy import stats

from keras_newton.bench import cli, grid, lr_control, sort_task, study


def _record(method, newton, lr, seed, val, test, damping=0.1):
    label = "baseline" if newton == "none" else f"Newton-{newton} (λ={damping:g})"
    return {"method": method, "newton": newton, "damping": None if newton == "none" else damping,
            "learning_rate": lr, "seed": seed, "variant": f"{method} · {label}",
            "val_exact_match": val, "exact_match": test}


def _toy_records():
    """Baseline: 3e-3 is best on *test*, 1e-3 on *validation*; one Newton variant."""
    records = []
    for seed, jitter in ((0, 0.0), (1, 0.02), (2, -0.01)):
        records += [_record("m", "none", 1e-3, seed, val=0.40 + jitter, test=0.20 + jitter),
                    _record("m", "none", 3e-3, seed, val=0.30 + jitter, test=0.60 + jitter),
                    _record("m", "hessian", 1e-3, seed, val=0.45 + jitter, test=0.30 + jitter),
                    _record("m", "hessian", 3e-3, seed, val=0.50 + jitter,
                            test=0.35 + 2 * jitter)]
    return records


def test_baseline_best_learning_rate_is_chosen_on_validation_not_test():
    records = _toy_records()
    assert lr_control.best_baseline_learning_rates(records) == {"m": 1e-3}
    # Swap the roles of validation and test: the choice follows validation.
    swapped = [dict(r, val_exact_match=r["exact_match"], exact_match=r["val_exact_match"])
               for r in records]
    assert lr_control.best_baseline_learning_rates(swapped) == {"m": 3e-3}


def test_ties_go_to_the_smaller_learning_rate():
    records = [_record("m", "none", lr, 0, val=0.5, test=t) for lr, t in ((3e-3, 0.9),
                                                                           (1e-3, 0.1))]
    assert lr_control.best_baseline_learning_rates(records) == {"m": 1e-3}


def test_each_newton_row_is_compared_at_equal_and_at_the_baselines_best_rate():
    records = _toy_records()
    rows = lr_control.lr_comparison(records)
    assert [(r["newton"], r["learning_rate"]) for r in rows] == [
        ("none", 1e-3), ("none", 3e-3), ("hessian", 1e-3), ("hessian", 3e-3)]

    def tests(newton, lr):
        return [r["exact_match"] for r in records
                if r["newton"] == newton and r["learning_rate"] == lr]

    newton_fast = rows[3]
    mean_jitter = 0.01 / 3  # the Newton row's test values carry twice the jitter
    # (a) equal learning rate: 3e-3 against the baseline at 3e-3 (a loss).
    assert newton_fast["delta_equal_lr"] == pytest.approx(0.35 - 0.60 + mean_jitter)
    assert newton_fast["p_equal_lr"] == pytest.approx(stats.ttest_ind(
        tests("hessian", 3e-3), tests("none", 3e-3), equal_var=False).pvalue)
    # (b) the baseline at its best rate by validation (1e-3), reported on test.
    assert newton_fast["baseline_best_lr"] == 1e-3
    assert newton_fast["delta_best_baseline"] == pytest.approx(0.35 - 0.20 + mean_jitter)
    assert newton_fast["p_best_baseline"] == pytest.approx(stats.ttest_ind(
        tests("hessian", 3e-3), tests("none", 1e-3), equal_var=False).pvalue)
    # Each row's own best rate by validation: baseline 1e-3, Newton 3e-3.
    assert [r["best_lr"] for r in rows] == [True, False, False, True]
    assert "delta_equal_lr" not in rows[0]  # the baseline has no comparison
    assert rows[2]["test"] == pytest.approx((0.30 + mean_jitter, rows[2]["test"][1], 3))


def test_a_missing_baseline_gives_no_comparison_not_an_error():
    records = [_record("m", "hessian", 1e-3, s, 0.5, 0.5) for s in (0, 1)]
    (row,) = lr_control.lr_comparison(records)
    assert row["delta_equal_lr"] is None and row["p_best_baseline"] is None
    assert "| – |" in lr_control.lr_table([row])


def test_new_columns_in_markdown_csv_and_json(tmp_path):
    rows = lr_control.lr_comparison(_toy_records())
    paths = lr_control.write_lr_files(str(tmp_path), rows, {"toy": True})
    markdown = open(paths["markdown"]).read()
    for header in ("Δ same lr", "p same lr", "baseline best lr", "Δ vs best baseline",
                   "p vs best baseline"):
        assert header in markdown
    from keras_newton.bench.results import parse_markdown_table

    table = parse_markdown_table(markdown)
    fast = [r for r in table if r["variant"].startswith("Newton") and r["lr"].startswith("0.003")]
    assert fast[0]["Δ same lr"] == "-24.67" and fast[0]["Δ vs best baseline"] == "+15.33"
    assert fast[0]["baseline best lr"] == "0.001" and fast[0]["lr"] == "0.003 ★"
    with open(paths["csv"]) as stream:
        csv_rows = list(csv.DictReader(stream))
    assert set(lr_control.CSV_COLUMNS) <= set(csv_rows[0])
    fast_csv = [r for r in csv_rows if r["newton"] == "hessian" and r["learning_rate"] == "0.003"]
    assert float(fast_csv[0]["delta_best_baseline"]) == pytest.approx(0.15 + 0.01 / 3)
    assert float(fast_csv[0]["baseline_best_lr"]) == 1e-3
    data = json.load(open(paths["json"]))
    assert data["config"] == {"toy": True}
    fast_json = [r for r in data["rows"] if r["newton"] == "hessian"
                 and r["learning_rate"] == 0.003][0]
    assert fast_json["p_equal_lr"] == pytest.approx(rows[3]["p_equal_lr"])
    assert fast_json["delta_best_baseline"] == pytest.approx(0.15 + 0.01 / 3)
    assert open(paths["plot"], "rb").read(4) == b"\x89PNG"


def test_learning_rate_axis_labels_exactly_the_rates(tmp_path):
    # A log axis over about one decade labels its minor ticks, on top of each other.
    from keras_newton.bench import plots

    rows = [{"method": "m"}]
    with plots.method_panels(str(tmp_path / "p.png"), rows, "lr",
                             x_ticks=[3e-4, 1e-3, 3e-3]) as panels:
        ax = panels[0][0]
        ax.plot([3e-4, 1e-3, 3e-3], [1, 2, 3], label="line")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.0003", "0.001", "0.003"]
    assert all(not t.get_text() for t in ax.get_xticklabels(minor=True))


CONFIG = {"n": 3, "steps": 2, "eval_every": 1, "batch_size": 2, "eval_sets": 4}


def test_every_learning_rate_has_its_own_folder_and_lambda_comes_from_the_plan(tmp_path):
    methods = [{"sorter": "neural_sort", "dampings": "hessian:0.01+fisher:1"},
               {"sorter": "soft_sort", "objective": "positional_ce", "newton": ["fisher"]}]
    best = {("soft_sort(τ=1, positional_ce)", "fisher"): 0.3}
    runs = lr_control.lr_runs(methods, ["hessian", "fisher"], [3e-4, 1e-3], [0, 1],
                              str(tmp_path), CONFIG, best)
    planned = {(r.method, r.variant.newton, r.variant.damping, r.task.config["learning_rate"],
                r.seed) for r in runs}
    assert len(planned) == len(runs) == 2 * 2 * (3 + 2)
    assert ("neural_sort(τ=1)", "fisher", 1.0, 3e-4, 1) in planned
    assert ("soft_sort(τ=1, positional_ce)", "fisher", 0.3, 1e-3, 0) in planned
    assert all(r.task.loss.objective == ("positional_ce" if "positional" in r.method else "bce")
               for r in runs)
    folders = {os.path.relpath(r.run_dir, tmp_path).split(os.sep)[0] for r in runs}
    assert folders == {"lr0.0003", "lr0.001"}
    assert len({r.run_dir for r in runs}) == len(runs)


def test_a_variant_without_a_lambda_is_refused(tmp_path):
    assert lr_control.variants_needing_a_best_damping([{"sorter": "neural_sort"}], ["hessian"])
    assert not lr_control.variants_needing_a_best_damping(
        [{"sorter": "neural_sort", "dampings": "hessian:0.1"}], ["hessian"])
    with pytest.raises(ValueError, match="no λ for neural_sort"):
        lr_control.lr_runs([{"sorter": "neural_sort"}], ["hessian"], [1e-3], [0],
                           str(tmp_path), CONFIG)


@pytest.mark.parametrize("text", ["hessian=0.1", "newton:0.1", "none:1", "hessian:-1"])
def test_bad_plan_dampings_raise(text):
    with pytest.raises(ValueError):
        grid.split_plan({"sorter": "neural_sort", "dampings": text})


def test_objective_reaches_the_task_and_its_label_only_when_not_default():
    args = cli.build_parser().parse_args(["study", "--objective", "positional_ce"])
    config = cli.task_config(args, "sort")
    assert config["objective"] == "positional_ce"
    assert sort_task.sorting_loss(dict(sort_task.SORT_DEFAULTS, **config)).objective == \
        "positional_ce"
    assert sort_task.describe(dict(sort_task.SORT_DEFAULTS)) == "neural_sort(τ=1)"
    assert sort_task.describe(dict(sort_task.SORT_DEFAULTS, sorter="diff_sort",
                                   objective="positional_ce")) == \
        "diff_sort(cauchy, β=10, positional_ce)"
    method = cli.parse_method("sorter=soft_sort,objective=positional_ce")
    assert lr_control.method_label(method, {}) == "soft_sort(τ=1, positional_ce)"
    # The entry wins over the base configuration (--sorter, --objective).
    assert lr_control.method_label(method, {"sorter": "neural_sort", "objective": "bce"}) == \
        "soft_sort(τ=1, positional_ce)"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["study", "--objective", "ce"])


# One tiny end-to-end run of both controls: NeuralSort under BCE (baseline
# only) and SoftSort under the positional cross-entropy with Newton-Fisher,
# at two learning rates, one seed.
TINY = ["--n", "4", "--steps", "4", "--eval-every", "2", "--batch-size", "4",
        "--eval-sets", "8", "--scorer", "mlp", "--seeds", "0", "--verbose", "0", "--no-xla",
        "--parts", "lr", "--learning-rates", "0.001", "0.003", "--newton", "fisher",
        "--methods", "sorter=neural_sort,newton=none",
        "sorter=soft_sort,objective=positional_ce,dampings=fisher:0.1"]


def test_tiny_lr_control_of_both_objectives_runs_and_resumes(tmp_path, monkeypatch):
    # The per-evaluation diagnostics (tested with the study's other parts)
    # would double this test's time; the control does not depend on them.
    from keras_newton.bench import diagnostics

    monkeypatch.setattr(diagnostics, "make_monitor", lambda task, variant: None)
    assert cli.main(["study", "--output-dir", str(tmp_path), *TINY]) == 0
    part = tmp_path / "lr"
    assert sorted(p for p in os.listdir(part) if p.startswith("lr0")) == ["lr0.001", "lr0.003"]
    data = json.load(open(part / "lr_control.json"))
    rows = data["rows"]
    assert {(r["method"], r["newton"], r["learning_rate"]) for r in rows} == {
        (m, v, lr) for lr in (0.001, 0.003) for m, v in (
            ("neural_sort(τ=1)", "none"), ("soft_sort(τ=1, positional_ce)", "none"),
            ("soft_sort(τ=1, positional_ce)", "fisher"))}
    for row in rows:
        if row["newton"] == "fisher":
            assert row["damping"] == 0.1
            assert row["baseline_best_lr"] in (0.001, 0.003)
            assert math.isfinite(row["delta_equal_lr"])
    runs = json.load(open(part / "lr_runs.json"))["runs"]
    assert {r["config"]["objective"] for r in runs} == {"bce", "positional_ce"}
    assert {r["config"]["learning_rate"] for r in runs} == {0.001, 0.003}
    assert open(part / "lr_control.png", "rb").read(4) == b"\x89PNG"
    assert "Δ vs best baseline" in open(part / "lr_control.md").read()

    # Rerunning trains nothing: every run is reloaded from its folder.
    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(grid, "build_variant_model", refuse)
    before = open(part / "lr_control.csv").read()
    assert cli.main(["study", "--output-dir", str(tmp_path), *TINY]) == 0
    assert open(part / "lr_control.csv").read() == before


def test_lr_part_without_lambdas_needs_the_sweep(tmp_path):
    with pytest.raises(RuntimeError, match="sweep"):
        study.run_study([{"sorter": "neural_sort"}], ["hessian"], [0.1], [0], str(tmp_path),
                        base_config=CONFIG, budgets=[2], parts=["lr"],
                        learning_rates=[1e-3], log=lambda line: None)


def _preset_commands():
    """The two control commands of the comment block in presets.py, as argument lists."""
    import inspect
    import shlex

    from keras_newton.bench import presets

    source = inspect.getsource(presets)
    commands, current = [], None
    for line in source.splitlines():
        text = line.lstrip("# ").rstrip()
        if (text.startswith("keras-newton-bench study") and "--parts lr" in text) or \
                (text.startswith("keras-newton-bench grid") and "--steps 2000" in text):
            current = []
            commands.append(current)
        if current is not None and line.startswith("#"):
            current.append(text.rstrip("\\"))
            if not text.endswith("\\"):
                current = None
    return [shlex.split(" ".join(c))[1:] for c in commands]


def test_the_preset_commands_plan_the_documented_runs(tmp_path):
    from keras_newton.bench import presets

    learning_rate, objective = _preset_commands()
    args = cli.build_parser().parse_args(learning_rate)
    assert args.parts == ["lr"] and args.learning_rates == [3e-4, 1e-3, 3e-3, 1e-2]
    config = dict(presets.STUDY_QUICK, **cli.task_config(args, "sort"))
    config["eval_sets"] = 4  # planning builds the evaluation sets; keep it cheap
    lr_planned = lr_control.lr_runs(cli._method_configs(args), args.newton,
                                    args.learning_rates, args.seeds, str(tmp_path), config)
    args = cli.build_parser().parse_args(objective)
    config = dict(cli.task_config(args, "sort"), eval_sets=4)
    objective_planned, _ = grid.plan_grid("sort", cli._method_configs(args), args.newton,
                                          args.seeds, str(tmp_path), base_config=config)
    assert len(lr_planned) == 72 and len(objective_planned) == 18
    # λ are the sweep's best (docs/study/sweep_best.json), for both objectives.
    sweep = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "study",
                                        "sweep_best.json"), encoding="utf-8"))
    main_job = {}
    for best in sweep["best"]:
        sorter = best["method"].split("(")[0]
        if sorter != "diff_sort":
            main_job.setdefault(sorter, {})[best["newton"]] = best["damping"]
    for run in lr_planned + objective_planned:
        assert run.task.config["n"] == 10 and run.task.config["steps"] == 2000
        if run.variant.is_newton:
            assert run.variant.damping == main_job[run.task.config["sorter"]][run.variant.newton]
    assert {r.task.config["objective"] for r in lr_planned} == {"bce"}
    assert {r.task.config["objective"] for r in objective_planned} == {"positional_ce"}
    # The objective control's runs equal the BCE runs at 1e-3 but for the objective.
    bce = {(r.task.config["sorter"], r.variant.newton, r.seed): r.task.config
           for r in lr_planned if r.task.config["learning_rate"] == 1e-3}
    for run in objective_planned:
        twin = bce[(run.task.config["sorter"], run.variant.newton, run.seed)]
        assert {k: v for k, v in run.task.config.items() if twin.get(k) != v} == {
            "objective": "positional_ce"}


def test_the_controls_page_shows_the_preset_commands():
    page = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "results",
                             "controls.md"), encoding="utf-8").read()
    flat = " ".join(page.replace("\\\n", " ").split())
    for argv in _preset_commands():
        assert "keras-newton-bench " + " ".join(argv) in flat


def test_a_diverged_seed_is_left_out_of_the_means_not_an_error():
    records = _toy_records()
    records.append(_record("m", "hessian", 1e-3, 3, val=None, test=None))  # NaN in JSON
    row = [r for r in lr_control.lr_comparison(records)
           if r["newton"] == "hessian" and r["learning_rate"] == 1e-3][0]
    assert row["test"][2] == 3 and row["seeds"] == 4
