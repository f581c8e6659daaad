"""Grids of runs: methods × training variants × seeds, summarized like the paper.

For every method configuration (a sorter, a path loss, a classifier), every
training variant (the loss itself, Newton-Hessian, Newton-Fisher, …) and
every seed, one resumable run (:func:`keras_newton.bench.training.run_training`)
is made in ``<output_dir>/runs/<method>/<variant>/seed<k>``. The records are
summarized per row as mean ± sample standard deviation over seeds and written
as ``<name>.md``, ``<name>.csv``, ``<name>.json`` (full configuration and
library versions) and ``<name>.png`` (test metric against training steps),
all atomically. Rerunning a finished or interrupted grid reuses what is done.

Methods may carry their own variants, seeds, dampings and learning rates per
variant (the main job trains every variant at the learning rate selected for
it on validation). With
``shard=(i, k)`` a process trains only its share of the runs, so ``k``
processes (``keras-newton-bench grid --workers k``) use ``k`` cores; a final
call without a shard finds every run finished and writes the files.

Example:
  >>> out = run_grid("sort", [{"sorter": "neural_sort"}], ["none", "hessian"],
  ...                [0, 1], "results/", base_config={...})   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Callable, Sequence

import keras

from keras_newton.bench import classify_task, path_task, plots, results, sort_task, workers
from keras_newton.bench.task import (
    Task,
    Variant,
    build_variant_model,
    format_damping,
    hessian_options_for,
    parse_damping,
    steps_per_execution,
)
from keras_newton.bench.diagnostics import DIAGNOSTIC_SETS
from keras_newton.bench.training import RECORD_FILE, run_training

TASKS: dict[str, tuple[Callable[[dict], Task], Callable[[dict], str], dict]] = {
    "sort": (sort_task.sort_task, sort_task.describe, sort_task.SORT_DEFAULTS),
    "path": (path_task.path_task, path_task.describe, path_task.PATH_DEFAULTS),
    "classify": (classify_task.classify_task, classify_task.describe,
                 classify_task.CLASSIFY_DEFAULTS),
}

NEWTON_LABELS = {"none": "baseline", "hessian": "Newton-Hessian", "fisher": "Newton-Fisher",
                 "elementwise_hessian": "Newton-elementwise-Hessian"}


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "x"


def variant_label(method: str, newton: str, damping: float,
                  hessian_options: dict | None = None,
                  learning_rate: float | None = None) -> str:
    """Row label, e.g. ``"neural_sort(τ=1) · Newton-Hessian (λ=0.01, rank 2)"``.

    ``hessian_options`` (``hessian_samples``, ``hessian_rank``,
    ``hessian_refresh_every``) are named when they differ from the exact,
    every-step Hessian; ``learning_rate`` is named when the variant has its
    own (``"neural_sort(τ=1) · baseline (lr=0.01)"``).
    """
    rate = [] if learning_rate is None else [f"lr={float(learning_rate):g}"]
    if newton == "none":
        return f"{method} · baseline" + (f" ({rate[0]})" if rate else "")
    details = [f"λ={format_damping(damping)}"]
    options = hessian_options or {}
    if options.get("hessian_samples") is not None:
        details.append(f"{options['hessian_samples']} samples")
    if options.get("hessian_rank") is not None:
        details.append(f"rank {options['hessian_rank']}")
    if options.get("hessian_refresh_every", 1) != 1:
        details.append(f"refresh every {options['hessian_refresh_every']}")
    if options.get("hessian_products", "autodiff") != "autodiff":
        details.append(options["hessian_products"].replace("_", " "))
    return f"{method} · {NEWTON_LABELS[newton]} ({', '.join(details + rate)})"


PLAN_KEYS = ("newton", "seeds", "dampings", "learning_rates")
"""Keys of a method entry that say how it is run, not what it is: its own
Newton variants, seeds, dampings and learning rate per variant
(``{"sorter": "neural_sort", "seeds": [0, 1]}``)."""


@dataclasses.dataclass
class PlannedRun:
    """One run of a grid: a method's task trained as ``variant`` with ``seed``."""

    task: Task
    method: str
    variant: Variant
    seed: int
    run_dir: str


def split_plan(method_options: dict) -> tuple[dict, dict]:
    """Splits a method entry into task options and its plan (:data:`PLAN_KEYS`).

    Example:
      >>> split_plan({"sorter": "soft_sort", "seeds": [0, 1]})
      ({'sorter': 'soft_sort'}, {'seeds': [0, 1]})
      >>> split_plan({"sorter": "soft_sort", "newton": "hessian+fisher"})[1]
      {'newton': ['hessian', 'fisher']}
      >>> split_plan({"sorter": "soft_sort", "dampings": "hessian:1e-3+fisher:0.01"})[1]
      {'dampings': {'hessian': 0.001, 'fisher': 0.01}}
      >>> split_plan({"sorter": "soft_sort", "learning_rates": "none:1e-2+hessian:3e-3"})[1]
      {'learning_rates': {'none': 0.01, 'hessian': 0.003}}
    """
    options = {k: v for k, v in method_options.items() if k not in PLAN_KEYS}
    plan = {k: method_options[k] for k in PLAN_KEYS if k in method_options}
    if isinstance(plan.get("newton"), str):  # From the command line: newton=hessian+fisher.
        plan["newton"] = plan["newton"].split("+")
    elif "newton" in plan and plan["newton"] is None:  # newton=none parses as None
        plan["newton"] = ["none"]
    if isinstance(plan.get("dampings"), str):  # dampings=hessian:0.001+fisher:0.01
        plan["dampings"] = parse_plan_dampings(plan["dampings"])
    if isinstance(plan.get("learning_rates"), str):  # learning_rates=none:0.01+hessian:0.01
        plan["learning_rates"] = parse_plan_learning_rates(plan["learning_rates"])
    if "learning_rates" in plan:
        plan["learning_rates"] = _checked_learning_rates(plan["learning_rates"])
    return options, plan


def parse_plan_learning_rates(text: str) -> dict[str, float]:
    """``"none:0.01+hessian:0.003"`` → ``{"none": 0.01, "hessian": 0.003}``.

    The command-line form of a method entry's own learning rate per variant
    (``none`` is the baseline).
    """
    rates = {}
    for item in filter(None, text.split("+")):
        variant, separator, value = item.partition(":")
        try:
            rates[variant] = float(value)
        except ValueError:
            separator = ""
        if not separator:
            raise ValueError(f"learning_rates must look like none:0.01+hessian:0.003, "
                             f"got {text!r}")
    return rates


def _checked_learning_rates(rates: dict) -> dict[str, float]:
    if not isinstance(rates, dict):
        raise TypeError(f"learning_rates must map variants to rates, got {rates!r}")
    for variant, rate in rates.items():
        if variant not in NEWTON_LABELS:
            raise ValueError(f"learning_rates: unknown variant {variant!r}; "
                             f"expected one of {tuple(NEWTON_LABELS)}")
        if not (isinstance(rate, (int, float)) and float(rate) > 0):
            raise ValueError(f"learning_rates: the rate of {variant!r} must be > 0, "
                             f"got {rate!r}")
    return {variant: float(rate) for variant, rate in rates.items()}


def parse_plan_dampings(text: str) -> dict[str, float | str]:
    """``"hessian:0.001+fisher:0.01"`` → ``{"hessian": 0.001, "fisher": 0.01}``.

    The command-line form of a method entry's own λ per Newton variant.
    """
    dampings = {}
    for item in filter(None, text.split("+")):
        variant, separator, value = item.partition(":")
        if not separator or variant not in NEWTON_LABELS or variant == "none":
            raise ValueError(f"dampings must look like hessian:0.001+fisher:0.01, "
                             f"got {text!r}")
        dampings[variant] = parse_damping(value)
    return dampings


def plan_grid(task_name: str, methods: Sequence[dict], newton: Sequence[str],
              seeds: Sequence[int], output_dir: str, *, base_config: dict | None = None,
              dampings: dict[str, float] | None = None,
              hessian_options: dict | None = None) -> tuple[list[PlannedRun], list[dict]]:
    """The runs of a grid, in order, and each method's configuration.

    A method entry may carry its own ``newton``, ``seeds``, ``dampings`` and
    ``learning_rates`` (see :data:`PLAN_KEYS`); the arguments are the
    defaults. A method with ``learning_rates`` must give one for each of its
    variants: each then trains at its own rate, named in its row label.

    Raises:
      ValueError: for an unknown task, or a method whose ``learning_rates``
        leave out one of its variants.
    """
    if task_name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {task_name!r}")
    make_task, describe, defaults = TASKS[task_name]
    base = dict(defaults, **(base_config or {}))
    runs, configs = [], []
    for method_options in methods:
        options, plan = split_plan(method_options)
        task = make_task(dict(base, **options))
        method = describe(task.config)
        method_dampings = dict(dampings or {}, **plan.get("dampings", {}))
        method_newton = list(plan.get("newton", newton))
        method_seeds = [int(s) for s in plan.get("seeds", seeds)]
        rates = plan.get("learning_rates")
        if rates is not None and set(method_newton) - set(rates):
            missing = sorted(set(method_newton) - set(rates))
            raise ValueError(
                f"method {method}: learning_rates give no rate for {missing}; give every "
                f"variant its rate, or one rate for all (--learning-rate)")
        configs.append({"method": method, **task.config, "newton": method_newton,
                        "seeds": method_seeds,
                        "dampings": {v: parse_damping(method_dampings.get(v, base.get("damping", 1.0)))
                                     for v in method_newton if v != "none"},
                        **({"learning_rates": {v: rates[v] for v in method_newton}}
                           if rates is not None else {})})
        tasks_by_rate: dict[float, Task] = {}
        for variant_name in method_newton:
            damping = parse_damping(method_dampings.get(variant_name, base.get("damping", 1.0)))
            options_for = hessian_options_for(variant_name, hessian_options)
            rate = None if rates is None else rates[variant_name]
            if rate is not None and rate not in tasks_by_rate:
                tasks_by_rate[rate] = make_task(dict(base, **options, learning_rate=rate))
            variant_task = task if rate is None else tasks_by_rate[rate]
            label = variant_label(method, variant_name, damping, options_for, rate)
            variant = Variant.from_flags(label, newton=variant_name, damping=damping,
                                          **options_for)
            for seed in method_seeds:
                run_dir = os.path.join(output_dir, "runs", slug(method), slug(variant_name),
                                       f"seed{seed}")
                runs.append(PlannedRun(variant_task, method, variant, seed, run_dir))
    return runs, configs


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"1/2"`` → ``(1, 2)``: worker 1 of 2 (see :func:`keras_newton.bench.workers.shard_runs`)."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like INDEX/COUNT, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {text!r}")
    return index, count


def execute_runs(runs: Sequence[PlannedRun], *, shard: tuple[int, int] | None = None,
                 verbose: int | str = "auto", jit_compile: bool = True,
                 diagnostics: bool = True,
                 log: Callable[[str], None] = print) -> list[dict | None]:
    """Trains (or reloads) every planned run; ``None`` for runs of other shards.

    One compiled model per method and variant is reused (re-initialized)
    across its seeds. A shard's runs come from
    :func:`keras_newton.bench.workers.shard_runs`. Sorting runs log
    :mod:`keras_newton.bench.diagnostics` at every evaluation when
    ``diagnostics`` is on.
    """
    from keras_newton.bench import diagnostics as diagnostics_lib

    records: list[dict | None] = [None] * len(runs)

    def finished(index: int) -> bool:
        return os.path.exists(os.path.join(runs[index].run_dir, RECORD_FILE))

    keys = [(id(run.task), run.variant) for run in runs]
    order = (range(len(runs)) if shard is None else
             workers.shard_runs([run.run_dir for run in runs], keys, shard, finished))
    model, model_key, monitor = None, None, None
    for index in order:
        run = runs[index]
        log(f"== {run.variant.name} · seed {run.seed}  ({run.run_dir})")
        done = finished(index)
        if not done and keys[index] != model_key:
            keras.backend.clear_session()
            model = build_variant_model(
                run.task, run.variant, run.seed, jit_compile,
                steps_per_execution=steps_per_execution(run.task.config["eval_every"]))
            model_key = keys[index]
            # Its traced functions are reused with the model, across seeds.
            monitor = (diagnostics_lib.make_monitor(run.task, run.variant)
                       if diagnostics and run.task.name == "sort" else None)
        record = run_training(run.task, run.variant, run.seed, run.run_dir, verbose=verbose,
                              jit_compile=jit_compile, model=None if done else model,
                              diagnostics=monitor)
        record["method"] = run.method
        records[index] = record
    return records


def run_grid(task_name: str, methods: Sequence[dict], newton: Sequence[str],
             seeds: Sequence[int], output_dir: str, *, base_config: dict | None = None,
             dampings: dict[str, float] | None = None,
             hessian_options: dict | None = None, name: str = "results",
             verbose: int | str = "auto", jit_compile: bool = True,
             shard: tuple[int, int] | None = None, diagnostics: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Runs every method × Newton variant × seed and writes the results files.

    Args:
      task_name: ``"sort"``, ``"path"`` or ``"classify"``.
      methods: per method, config entries overriding ``base_config``, and
        optionally its own ``newton``, ``seeds``, ``dampings`` and
        ``learning_rates``.
      newton: variants: ``"none"``, ``"hessian"``, ``"fisher"``,
        ``"elementwise_hessian"``.
      seeds: weight-initialization seeds.
      output_dir: where the runs and the results files go.
      base_config: the task configuration shared by all runs.
      dampings: Tikhonov λ per Newton variant (``damping`` of the config
        otherwise).
      hessian_options: ``hessian_samples``, ``hessian_rank`` and
        ``hessian_refresh_every`` of the Newton-Hessian variant (see
        :class:`keras_newton.bench.task.Variant`).
      name: stem of the results files.
      verbose: Keras progress-bar setting of ``fit``.
      jit_compile: XLA on (default) or off.
      shard: ``(index, count)``: train only every ``count``-th run, starting
        at ``index``, and write no results files (parallel workers; a final
        call without ``shard`` collects the finished runs).
      diagnostics: log the sorting diagnostics at every evaluation.
      log: where progress lines go.

    Returns:
      ``{"records", "table", "paths", "seconds"}`` (only ``records`` and
      ``seconds`` for a shard).
    """
    started = time.perf_counter()
    runs, configs = plan_grid(task_name, methods, newton, seeds, output_dir,
                              base_config=base_config, dampings=dampings,
                              hessian_options=hessian_options)
    records = execute_runs(runs, shard=shard, verbose=verbose, jit_compile=jit_compile,
                           diagnostics=diagnostics, log=log)
    if shard is not None:
        return {"records": [r for r in records if r is not None],
                "seconds": time.perf_counter() - started}
    task = runs[0].task
    metrics = list(task.metrics)
    full_config = {"task": task_name, "methods": configs, "newton": list(newton),
                   "dampings": {v: parse_damping((dampings or {}).get(v, 1.0))
                                for v in newton if v != "none"},
                   "hessian_options": dict(hessian_options or {}),
                   "seeds": [int(s) for s in seeds], "jit_compile": jit_compile}
    paths = write_grid_files(output_dir, name, records, task, task_name, full_config)
    with open(paths["markdown"], encoding="utf-8") as stream:
        table = stream.read()
    return {"records": records, "table": table, "paths": paths,
            "seconds": time.perf_counter() - started}


def write_grid_files(output_dir: str, name: str, records: Sequence[dict], task: Task,
                     task_name: str, full_config: dict,
                     diagnostics_runs: Sequence[dict] | None = None) -> dict[str, str]:
    """The results files of a grid: tables, JSON, the metric plot and diagnostics.

    ``diagnostics_runs`` narrows the diagnostics plot (default: every run).
    """
    metrics = list(task.metrics)
    selection = task.selection
    scales = {m: (1.0 if m == "cost_ratio" else 100.0) for m in metrics}
    seeds = sorted({int(r["seed"]) for r in records})
    title = (f"{task_name}: test {', '.join(metrics)} at the best validation {selection} "
             f"(mean ± std over seeds {', '.join(map(str, seeds))}; Δ and two-sided Welch p "
             f"against the method's baseline, bold p < 0.05; ×100 where marked)")
    paths = results.write_results(output_dir, name, records, metrics, full_config,
                                  title=title, scales=scales)
    paths["plot"] = plots.plot_metric(
        records, f"test_{selection}", os.path.join(output_dir, f"{name}.png"),
        title=f"{task_name}: test {selection} (mean ± std over seeds)",
        ylabel=f"test {selection}")
    diagnostics_runs = records if diagnostics_runs is None else diagnostics_runs
    if any(k.startswith("diag_") for r in diagnostics_runs for h in r.get("history", [])
           for k in h):
        paths["diagnostics"] = plots.plot_diagnostics(
            diagnostics_runs, os.path.join(output_dir, f"{name}_diagnostics.png"),
            title=f"{task_name}: diagnostics on {DIAGNOSTIC_SETS} validation sets "
                  "(mean over seeds)")
    return paths
