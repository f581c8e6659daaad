"""The main job's dampings are the study's best λ, and the main job's results page cites them."""

import json
import pathlib

from keras_newton.bench import presets, sort_task

ROOT = pathlib.Path(__file__).parents[2]
SWEEP = ROOT / "docs" / "study" / "sweep_best.json"


def _preset_dampings():
    for method in presets.QUICK_GRID_METHODS["sort"]:
        config = {k: v for k, v in method.items() if k not in ("newton", "seeds", "dampings")}
        label = sort_task.describe(dict(sort_task.SORT_DEFAULTS, **config))
        for newton, damping in method["dampings"].items():
            yield label, newton, damping


def test_main_job_dampings_are_the_sweeps_best_on_validation():
    sweep = json.loads(SWEEP.read_text(encoding="utf-8"))
    assert "validation" in sweep["selection"]
    best = {(b["method"], b["newton"]): b["damping"] for b in sweep["best"]}
    # The sweep ran in the main job's regime.
    assert sweep["steps"] == presets.QUICK["sort"]["steps"]
    for label, newton, damping in _preset_dampings():
        assert best[(label, newton)] == damping, (label, newton)


def test_the_main_job_page_cites_the_main_jobs_dampings():
    page = (ROOT / "docs" / "results" / "main_job.md").read_text(encoding="utf-8")
    section = page[page.index("## Five seeds"):]
    for label, newton, damping in _preset_dampings():
        name = {"hessian": "Newton-Hessian", "fisher": "Newton-Fisher"}[newton]
        assert f"{label} · {name} (λ={damping:g})" in section, (label, newton)
