"""The main job's λ and learning rates are the committed studies' selections on
validation, and the main job's results page cites them."""

import json
import pathlib

from keras_newton.bench import grid, presets, sort_task

ROOT = pathlib.Path(__file__).parents[2]
SWEEP = ROOT / "docs" / "study" / "sweep_best.json"
TUNED = ROOT / "docs" / "results" / "tuned_baseline"
# The learning-rate studies of the tuned-baseline plan: ten seeds of the
# sorters' baselines and Newton-Hessian, three of the Fisher rows and the control.
LEARNING_RATE_STUDIES = [TUNED / "step3_ten_seeds" / "lr_control.json",
                         TUNED / "step4a_locate" / "lr_control.json"]


def _label(method):
    config = {k: v for k, v in method.items() if k not in grid.PLAN_KEYS}
    return sort_task.describe(dict(sort_task.SORT_DEFAULTS, **config))


def _preset_dampings():
    for method in presets.QUICK_GRID_METHODS["sort"]:
        for newton, damping in method["dampings"].items():
            yield _label(method), newton, damping


def _selected_learning_rates():
    """(method, variant) → (best rate by mean validation exact match, the grid, seeds).

    Each row is taken from the study that ran it with the most seeds.
    """
    rows = {}
    for path in LEARNING_RATE_STUDIES:
        study = json.loads(path.read_text(encoding="utf-8"))
        assert "validation" in study["selection"]
        assert study["config"]["base_config"]["steps"] == presets.QUICK["sort"]["steps"]
        by_row = {}
        for row in study["rows"]:
            by_row.setdefault((row["method"], row["newton"]), []).append(row)
        for key, candidates in by_row.items():
            seeds = min(row["seeds"] for row in candidates)
            if key not in rows or seeds > rows[key][2]:
                best = max(candidates, key=lambda row: row["validation"][0])
                grid_rates = sorted(row["learning_rate"] for row in candidates)
                rows[key] = (best["learning_rate"], grid_rates, seeds)
    return rows


def _lambda_checks():
    """sorter → {learning rate → the λ check's selection at that rate}."""
    checks = {}
    for path in sorted(TUNED.glob("step*_lambda/*_lambda_check.json")):
        check = json.loads(path.read_text(encoding="utf-8"))
        assert check["selection"] == "best mean validation exact_match"
        best = max(check["candidates"], key=lambda c: c["val_exact_match"][0])
        assert best["damping"] == check["selected_damping"]
        checks.setdefault(check["sorter"], {})[check["learning_rate"]] = check
    return checks


def test_main_job_dampings_are_the_selection_on_validation():
    # Every λ is the sweep's best; Newton-Hessian's is then checked against
    # λ/√10 and λ·√10 at its selected rate, and the best of the three is kept.
    sweep = json.loads(SWEEP.read_text(encoding="utf-8"))
    assert "validation" in sweep["selection"]
    best = {(b["method"], b["newton"]): b["damping"] for b in sweep["best"]}
    # The sweep ran in the main job's regime.
    assert sweep["steps"] == presets.QUICK["sort"]["steps"]
    checks = _lambda_checks()
    hessian_rows = 0
    for method in presets.QUICK_GRID_METHODS["sort"]:
        label = _label(method)
        for newton, damping in method["dampings"].items():
            if newton != "hessian":
                assert best[(label, newton)] == damping, (label, newton)
                continue
            check = checks[method["sorter"]][method["learning_rates"]["hessian"]]
            assert best[(label, newton)] in [c["damping"] for c in check["candidates"]]
            assert check["selected_damping"] == damping, label
            hessian_rows += 1
    assert hessian_rows == 2


def test_the_main_job_page_cites_the_main_jobs_dampings_and_rates():
    page = (ROOT / "docs" / "results" / "main_job.md").read_text(encoding="utf-8")
    section = page[page.index("## Five seeds at the selected rates"):]
    section = section[:section.index("\n## ")]
    for method in presets.QUICK_GRID_METHODS["sort"]:
        rates = method["learning_rates"]
        assert f"{_label(method)} · baseline (lr={rates['none']:g})" in section
        for newton, damping in method["dampings"].items():
            name = {"hessian": "Newton-Hessian", "fisher": "Newton-Fisher"}[newton]
            assert f"{_label(method)} · {name} (λ={damping:g}, lr={rates[newton]:g})" in section


def test_main_job_learning_rates_are_the_studies_selection_on_validation():
    selected = _selected_learning_rates()
    checked = 0
    for method in presets.QUICK_GRID_METHODS["sort"]:
        assert set(method["learning_rates"]) == set(method["newton"])
        for newton, rate in method["learning_rates"].items():
            best, grid_rates, seeds = selected[(_label(method), newton)]
            assert rate == best, (_label(method), newton)
            # The optimum is inside the grid, not on its edge.
            assert grid_rates[0] < best < grid_rates[-1], (_label(method), newton)
            assert seeds >= 3
            checked += 1
    assert checked == 8


def test_the_main_job_trains_each_variant_at_its_preset_rate():
    from keras_newton.bench import cli

    args = cli.build_parser().parse_args(["grid", "--quick"])
    config = dict(cli.task_config(args, "sort"), eval_sets=4)
    runs, _ = grid.plan_grid("sort", cli._method_configs(args), ["none"], [0], "unused",
                             base_config=config)
    rates = {(_label(m), newton): rate for m in presets.QUICK_GRID_METHODS["sort"]
             for newton, rate in m["learning_rates"].items()}
    assert len(runs) == 40
    for run in runs:
        assert run.task.config["learning_rate"] == rates[(run.method, run.variant.newton)]
        assert f"lr={run.task.config['learning_rate']:g}" in run.variant.name
