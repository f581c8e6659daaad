"""The efficacy study: when do Newton losses beat the loss they wrap, and why.

Parts, each a set of resumable runs (:mod:`keras_newton.bench.grid`)
written under ``<output_dir>/<part>/``:

* **sweep** (the paper's Fig. 4): every method × Newton variant × damping λ
  of a log grid × seed, plus each method's baseline, at one step budget. The
  table gives test metrics with Δ and the Welch p against the baseline, and
  marks per method and variant the *best λ*, chosen on the **validation**
  exact match (mean over seeds), never on test. ``sweep.png`` plots test
  exact match against λ with the baseline's mean ± std as a band.
* **length**: each method's baseline and every variant at its best λ (or
  at the method entry's own ``dampings=hessian:1e-4+fisher:0.01``, which
  needs no finished sweep), trained for the longest budget; the gain at every shorter budget ``B``
  is read from the same runs by model selection over the evaluations up to
  ``B``. This equals training for ``B`` steps: the learning rate is constant
  and the data stream is a function of the step, so the first ``B`` steps of
  a longer run *are* the ``B``-step run. ``length.png`` plots Newton −
  baseline (test exact match) against steps.
* **diagnostics** are logged at every evaluation of every run (see
  :mod:`keras_newton.bench.diagnostics`); ``diagnostics_<method>.png`` shows
  them for the length runs.
* **lr** (a control, not run by default: ``--parts lr --learning-rates 3e-4
  1e-3 3e-3``): each method's baseline and every variant (at the method's
  own ``dampings`` or the sweep's best λ) at every learning rate × seed; each
  Newton row against the baseline at the same learning rate and at the
  baseline's own best learning rate (chosen on validation, reported on
  test), with Welch p. See :mod:`keras_newton.bench.lr_control`.

The other control, the form of the ranking loss, is a method option:
``--methods sorter=soft_sort sorter=soft_sort,objective=positional_ce`` runs
both objectives of :class:`keras_newton.losses.SortingLoss` side by side in
any part.

Its tables and figures are made by :mod:`keras_newton.bench.study_report`.

Damping grid: ``10^k`` for ``k`` from ``log10(min)`` to ``log10(max)`` in
steps of ``1 / per_decade`` (default 1e-3 … 1e3, half decades, as the paper's
grid).

Example:
  $ keras-newton-bench study --quick --parts sweep --dampings 0.01 0.1 1
  $ keras-newton-bench study --quick --parts lr --learning-rates 3e-4 1e-3 3e-3 \\
      --methods sorter=neural_sort,dampings=hessian:0.0001+fisher:0.01
  >>> damping_grid(1e-3, 1e3, 2)[:3]
  [0.001, 0.00316, 0.01]

References:
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024, Table 1 and Fig. 4.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Callable, Sequence

from keras_newton.bench import lr_control, plots, results
from keras_newton.bench.study_report import (
    SELECTION,
    adaptive_table,
    best_table,
    length_table,
    plot_length,
    plot_sweep,
)
from keras_newton.bench.grid import (
    TASKS,
    PlannedRun,
    execute_runs,
    plan_grid,
    slug,
    split_plan,
    write_grid_files,
)
from keras_newton.bench.task import ADAPTIVE, format_damping, parse_damping
from keras_newton.bench.training import RECORD_FILE, select

PARTS = ("sweep", "length", "lr")
DEFAULT_PARTS = ("sweep", "length")  # the lr control is asked for by name


def damping_grid(minimum: float = 1e-3, maximum: float = 1e3,
                 per_decade: int = 2) -> list[float]:
    """Log-spaced dampings, rounded to 3 significant digits (see module docstring)."""
    if not (0 < minimum <= maximum) or per_decade < 1:
        raise ValueError(f"need 0 < minimum <= maximum and per_decade >= 1, got "
                         f"{minimum}, {maximum}, {per_decade}")
    low, high = math.log10(minimum), math.log10(maximum)
    count = int(round((high - low) * per_decade)) + 1
    return [float(f"{10 ** (low + k / per_decade):.3g}") for k in range(count)]


def sweep_runs(methods: Sequence[dict], newton: Sequence[str], dampings: Sequence[float],
               seeds: Sequence[int], output_dir: str, base_config: dict) -> list[PlannedRun]:
    """Baseline and variant × λ runs of every method (one grid per λ, shared baseline)."""
    runs = []
    for method in methods:
        options, plan = split_plan(method)  # A method may study fewer variants.
        variants = [v for v in plan.get("newton", newton) if v != "none"]
        baseline, _ = plan_grid("sort", [options], ["none"], seeds, output_dir,
                                base_config=base_config)
        runs += baseline
        for damping in dampings:
            planned, _ = plan_grid("sort", [options], variants, seeds,
                                   os.path.join(output_dir, f"lambda{format_damping(damping)}"),
                                   base_config=base_config,
                                   dampings={v: damping for v in variants})
            runs += planned
    return runs


def best_dampings(records: Sequence[dict], selection: str = SELECTION) -> dict:
    """``{(method, newton): λ}`` with the best mean *validation* ``selection``.

    Ties go to the larger λ (the step closer to plain gradient descent).

    Example:
      >>> rows = [{"method": "m", "newton": "hessian", "damping": d, "seed": 0,
      ...          "val_exact_match": v, "exact_match": t}
      ...         for d, v, t in ((0.1, 0.2, 0.9), (1.0, 0.3, 0.1))]
      >>> best_dampings(rows)
      {('m', 'hessian'): 1.0}
    """
    groups: dict[tuple, dict[float, list[float]]] = {}
    for record in records:
        if record["newton"] == "none" or record["damping"] == ADAPTIVE:
            continue  # the best *grid* λ; adaptive damping is its own column
        key = (record["method"], record["newton"])
        groups.setdefault(key, {}).setdefault(float(record["damping"]), []).append(
            float(record[f"val_{selection}"]))
    return {key: max(values, key=lambda d: (sum(values[d]) / len(values[d]), d))
            for key, values in groups.items()}


def length_runs(methods: Sequence[dict], newton: Sequence[str], best: dict,
                seeds: Sequence[int], output_dir: str, base_config: dict) -> list[PlannedRun]:
    """Baseline and each variant at its λ, at the longest budget.

    A variant's λ is the method entry's own (``dampings=fisher:0.01``), else
    the sweep's best; variants with neither are left out.
    """
    runs = []
    for method in methods:
        options, plan = split_plan(method)
        planned, configs = plan_grid("sort", [options], ["none"], seeds, output_dir,
                                     base_config=base_config)
        label = configs[0]["method"]
        own = plan.get("dampings", {})
        chosen = [v for v in plan.get("newton", newton)
                  if v != "none" and (v in own or (label, v) in best)]
        dampings = {v: own[v] if v in own else best[(label, v)] for v in chosen}
        more, _ = plan_grid("sort", [options], chosen, seeds, output_dir,
                            base_config=base_config, dampings=dampings)
        runs += planned + more
    return runs


def gain_by_budget(records: Sequence[dict], budgets: Sequence[int],
                   selection: str = SELECTION) -> list[dict]:
    """Per Newton row and budget: Δ test ``selection`` to the baseline, Welch p.

    The test value at budget ``B`` is that of the evaluation with the best
    validation value among evaluations at steps ``<= B``.
    """
    by_row: dict[str, list[dict]] = {}
    for record in records:
        by_row.setdefault(record["variant"], []).append(record)
    baselines = {rows[0]["method"]: rows for rows in by_row.values()
                 if rows[0]["newton"] == "none"}
    out = []
    for variant, rows in by_row.items():
        first = rows[0]
        if first["newton"] == "none" or first["method"] not in baselines:
            continue
        entry = {"variant": variant, "method": first["method"], "newton": first["newton"],
                 "damping": first["damping"], "budgets": []}
        for budget in budgets:
            def at_budget(group):
                values = []
                for record in group:
                    history = [h for h in record["history"] if h["step"] <= budget]
                    if history:
                        values.append(select(history, selection, [selection])[selection])
                return values
            newton_values, baseline_values = at_budget(rows), at_budget(baselines[first["method"]])
            newton_stats = results.mean_std(newton_values)
            baseline_stats = results.mean_std(baseline_values)
            entry["budgets"].append({
                "steps": int(budget), "newton": list(newton_stats),
                "baseline": list(baseline_stats),
                "delta": newton_stats[0] - baseline_stats[0],
                "delta_std": math.sqrt(newton_stats[1] ** 2 / max(newton_stats[2], 1)
                                       + baseline_stats[1] ** 2 / max(baseline_stats[2], 1)),
                "p_value": results.welch_p_value(newton_values, baseline_values)})
        out.append(entry)
    return out


def run_study(methods: Sequence[dict], newton: Sequence[str], dampings: Sequence[float],
              seeds: Sequence[int], output_dir: str, *, base_config: dict,
              budgets: Sequence[int], length_seeds: Sequence[int] | None = None,
              parts: Sequence[str] = DEFAULT_PARTS,
              learning_rates: Sequence[float] = (),
              shard: tuple[int, int] | None = None,
              verbose: int | str = 0, jit_compile: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Runs the study's parts and writes their files (see the module docstring).

    Args:
      methods: sorting method configs (``{"sorter": "neural_sort"}``, ...); an
        entry's own ``newton`` list narrows the variants studied for it.
      newton: Newton variants to study (``"hessian"``, ``"fisher"``,
        ``"elementwise_hessian"``).
      dampings: the λ grid of the sweep.
      seeds: seeds of the sweep.
      output_dir: results folder; parts go to ``sweep/``, ``length/``, ``lr/``.
      base_config: sorting task configuration (``steps`` is the sweep's
        budget; ``eval_every`` must divide every budget).
      budgets: step budgets of the length part (the longest is trained).
      length_seeds: seeds of the length part (default: ``seeds``).
      parts: which parts to run, in order (:data:`PARTS`).
      learning_rates: the lr part's learning rates.
      shard: ``(index, count)``: train only this worker's share, write nothing.
      verbose: Keras progress setting.
      jit_compile: XLA on (default).
      log: where progress lines go.

    Returns:
      ``{"paths", "tables", "best", "gains", "seconds"}``.
    """
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"parts must be among {PARTS}, got {sorted(unknown)}")
    if "none" in newton:
        raise ValueError("newton lists Newton variants; the baseline is always run")
    started = time.perf_counter()
    budgets = sorted(int(b) for b in budgets)
    eval_every = int(base_config.get("eval_every", TASKS["sort"][2]["eval_every"]))
    if any(b % eval_every for b in budgets):
        raise ValueError(f"eval_every ({eval_every}) must divide every budget {budgets}")
    out = {"paths": {}, "tables": {}, "best": {}, "gains": [], "sweep_gains": []}
    sweep_dir = os.path.join(output_dir, "sweep")

    def planned_sweep() -> list[PlannedRun]:
        # Planned only where used: every λ builds its tasks (evaluation sets).
        return sweep_runs(methods, newton, dampings, seeds, sweep_dir, base_config)

    config = {"methods": list(methods), "newton": list(newton),
              "dampings": [parse_damping(d) for d in dampings], "seeds": [int(s) for s in seeds],
              "base_config": dict(base_config), "budgets": budgets,
              "length_seeds": [int(s) for s in (length_seeds or seeds)],
              "selection": f"best λ by mean validation {SELECTION}"}
    if "sweep" in parts:
        runs = planned_sweep()
        records = execute_runs(runs, shard=shard, verbose=verbose, jit_compile=jit_compile,
                               log=log)
        if shard is None:
            out["best"] = best_dampings(records)
            # The baselines and the best λ: diagnostics and gain per evaluation.
            chosen = [r for r in records if r["newton"] == "none" or r["damping"] == ADAPTIVE
                      or out["best"].get((r["method"], r["newton"])) == r["damping"]]
            out["paths"]["sweep"] = write_grid_files(sweep_dir, "sweep", records, runs[0].task,
                                                     "sort", {"study": config},
                                                     diagnostics_runs=chosen)
            summary = results.summarize(records, list(runs[0].task.metrics))
            steps = int(runs[0].task.config["steps"])
            out["sweep_gains"] = gain_by_budget(chosen, range(eval_every, steps + 1, eval_every))
            table = (best_table(summary, out["best"]) + "\n"
                     + adaptive_table(records, out["best"]) + "\n"
                     + length_table(out["sweep_gains"],
                                    range(eval_every, steps + 1, eval_every)))
            with open(out["paths"]["sweep"]["markdown"], encoding="utf-8") as stream:
                sweep_md = stream.read()
            results.atomic_write_text(out["paths"]["sweep"]["markdown"],
                                      sweep_md + "\n" + table)
            out["tables"]["sweep"] = sweep_md + "\n" + table
            out["paths"]["sweep"]["best"] = results.atomic_write_json(
                os.path.join(sweep_dir, "sweep_best.json"),
                {"selection": config["selection"], "steps": steps,
                 "best": [{"method": m, "newton": v, "damping": d}
                          for (m, v), d in out["best"].items()],
                 "gains_by_step": out["sweep_gains"]})
            out["paths"]["sweep"]["lambda_plot"] = plot_sweep(
                summary, os.path.join(sweep_dir, "sweep_lambda.png"))
    if "length" in parts:
        if not out["best"] and lr_control.variants_needing_a_best_damping(methods, newton):
            # Variants without a λ of their own take the sweep's choice: read
            # its finished runs.
            out["best"] = best_dampings(finished_records(planned_sweep()))
        length_dir = os.path.join(output_dir, "length")
        long_config = dict(base_config, steps=budgets[-1])
        runs_long = length_runs(methods, newton, out["best"], length_seeds or seeds,
                                length_dir, long_config)
        records = execute_runs(runs_long, shard=shard, verbose=verbose,
                               jit_compile=jit_compile, log=log)
        if shard is None:
            out["paths"]["length"] = write_grid_files(length_dir, "length", records,
                                                      runs_long[0].task, "sort",
                                                      {"study": config})
            out["gains"] = gain_by_budget(records, budgets)
            table = length_table(out["gains"], budgets)
            out["tables"]["length"] = table
            out["paths"]["length"]["gain_table"] = results.atomic_write_text(
                os.path.join(length_dir, "gain_vs_steps.md"), table)
            results.atomic_write_json(os.path.join(length_dir, "gain_vs_steps.json"),
                                      out["gains"])
            out["paths"]["length"]["gain_plot"] = plot_length(
                out["gains"], os.path.join(length_dir, "gain_vs_steps.png"))
            for method in dict.fromkeys(r["method"] for r in records):
                out["paths"]["length"][f"diagnostics {method}"] = plots.plot_diagnostics(
                    [r for r in records if r["method"] == method],
                    os.path.join(length_dir, f"diagnostics_{slug(method)}.png"),
                    title=f"{method}: diagnostics on 100 validation sets (mean over seeds)")
    if "lr" in parts:
        if not out["best"] and lr_control.variants_needing_a_best_damping(methods, newton):
            out["best"] = best_dampings(finished_records(planned_sweep()))
        control = lr_control.run_lr_control(
            methods, newton, learning_rates, seeds, os.path.join(output_dir, "lr"),
            base_config=base_config, best=out["best"], shard=shard, verbose=verbose,
            jit_compile=jit_compile, log=log)
        if shard is None:
            out["paths"]["lr"] = control["paths"]
            out["tables"]["lr"] = control["table"]
            out["lr_rows"] = control["rows"]
    out["best"] = {f"{m} · {v}": d for (m, v), d in out["best"].items()}
    out["seconds"] = time.perf_counter() - started
    return out


def finished_records(runs: Sequence[PlannedRun]) -> list[dict]:
    """The records of finished runs; a clear error if one is missing."""
    records = []
    for run in runs:
        path = os.path.join(run.run_dir, RECORD_FILE)
        if not os.path.exists(path):
            raise RuntimeError(f"this part needs the finished sweep's best λ ({path} is "
                               "missing): run --parts sweep first, with the same flags, "
                               "or give every method its own dampings")
        with open(path, encoding="utf-8") as stream:
            records.append(dict(json.load(stream), method=run.method))
    return records


__all__ = ["DEFAULT_PARTS", "PARTS", "best_dampings", "damping_grid", "finished_records", "gain_by_budget",
           "length_runs",
           "run_study", "sweep_runs"]
