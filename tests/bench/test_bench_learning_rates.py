"""A grid method may train each variant at its own learning rate.

The main job trains every variant at the rate selected for it on validation,
so a method entry carries ``learning_rates`` per variant; a rerun with another
rate must not read an old run back as if it were the new one.
"""

import json
import os

import pytest

from keras_newton.bench import cli, grid

TINY_SORT = ["--n", "3", "--steps", "2", "--eval-every", "1", "--batch-size", "2",
             "--eval-sets", "4", "--seeds", "0", "--verbose", "0", "--no-xla"]
TINY_CONFIG = {"n": 3, "steps": 2, "eval_every": 1, "batch_size": 2, "eval_sets": 4}


@pytest.mark.parametrize("text, expected", [
    ("none:0.01+hessian:3e-3", {"none": 0.01, "hessian": 0.003}),
    ("fisher:1e-1", {"fisher": 0.1}),
])
def test_command_line_form_parses(text, expected):
    options, plan = grid.split_plan({"sorter": "soft_sort", "learning_rates": text})
    assert options == {"sorter": "soft_sort"}
    assert plan["learning_rates"] == expected


@pytest.mark.parametrize("rates, message", [
    ("none=0.01", "must look like"),
    ("none:fast", "must look like"),
    ("newton:0.01", "unknown variant 'newton'"),
    ("none:0", "must be > 0"),
    ("hessian:-1e-3", "must be > 0"),
    ({"none": float("nan")}, "must be > 0"),
])
def test_bad_rates_are_rejected_naming_the_option(rates, message):
    with pytest.raises(ValueError, match="learning_rates") as error:
        grid.split_plan({"sorter": "soft_sort", "learning_rates": rates})
    assert message in str(error.value)


def test_rates_must_be_a_mapping():
    with pytest.raises(TypeError, match="learning_rates"):
        grid.split_plan({"sorter": "soft_sort", "learning_rates": [0.01]})


def test_each_variant_trains_at_its_own_rate_and_says_so():
    rates = {"none": 0.01, "hessian": 0.003}
    runs, configs = grid.plan_grid(
        "sort", [{"sorter": "neural_sort", "learning_rates": rates}], ["none", "hessian"],
        [0, 1], "unused", base_config=TINY_CONFIG)
    assert len(runs) == 4
    for run in runs:
        assert run.task.config["learning_rate"] == rates[run.variant.newton]
    labels = {run.variant.newton: run.variant.name for run in runs}
    assert labels == {"none": "neural_sort(τ=1) · baseline (lr=0.01)",
                      "hessian": "neural_sort(τ=1) · Newton-Hessian (λ=1, lr=0.003)"}
    assert configs[0]["learning_rates"] == rates
    # Without learning_rates nothing changes: one task, the base rate, old labels.
    runs, configs = grid.plan_grid("sort", [{"sorter": "neural_sort"}], ["none"], [0],
                                   "unused", base_config=dict(TINY_CONFIG, learning_rate=0.02))
    assert runs[0].task.config["learning_rate"] == 0.02
    assert runs[0].variant.name == "neural_sort(τ=1) · baseline"
    assert "learning_rates" not in configs[0]


def test_a_variant_without_a_rate_is_an_error():
    with pytest.raises(ValueError, match=r"no rate for \['fisher'\]"):
        grid.plan_grid("sort", [{"sorter": "neural_sort", "learning_rates": {"none": 0.01}}],
                       ["none", "fisher"], [0], "unused", base_config=TINY_CONFIG)


def test_the_learning_rate_flag_replaces_a_presets_rates():
    args = cli.build_parser().parse_args(["grid", "--quick", "--learning-rate", "0.02"])
    methods = cli._method_configs(args)
    assert all("learning_rates" not in method for method in methods)
    runs, _ = grid.plan_grid("sort", methods, ["none"], [0], "unused",
                             base_config=dict(cli.task_config(args, "sort"), eval_sets=4))
    assert {run.task.config["learning_rate"] for run in runs} == {0.02}


def test_a_grid_trains_at_the_rates_and_refuses_a_stale_run(tmp_path):
    out = str(tmp_path / "grid")
    command = ["grid", "--task", "sort", "--newton", "none", "fisher", "--output-dir", out,
               *TINY_SORT, "--methods"]
    assert cli.main([*command, "sorter=neural_sort,learning_rates=none:0.01+fisher:0.003"]) == 0
    with open(os.path.join(out, "results.json"), encoding="utf-8") as stream:
        data = json.load(stream)
    assert {r["newton"]: r["config"]["learning_rate"] for r in data["runs"]} == {
        "none": 0.01, "fisher": 0.003}
    assert data["config"]["methods"][0]["learning_rates"] == {"none": 0.01, "fisher": 0.003}
    # Same folder, another rate: the finished runs are not read back as new ones.
    with pytest.raises(ValueError, match=r"another configuration \(learning_rate: 0\.01 there, "
                                         r"0\.02 now\)"):
        cli.main([*command, "sorter=neural_sort,learning_rates=none:0.02+fisher:0.003"])
    # Same folder, another λ for the Newton variant: refused as well.
    with pytest.raises(ValueError, match=r"damping: 0\.001 there, 0\.01 now"):
        cli.main([*command, "sorter=neural_sort,learning_rates=none:0.01+fisher:0.003,"
                  "dampings=fisher:0.01"])
