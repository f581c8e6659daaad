"""The learning-rate control of the study: is a Newton gain only a step size?

With Adam, a Newton loss whose batch curvature is nearly isotropic moves the
network like the plain gradient times a per-batch scalar (DESIGN §7), so a
gain could be a change of effective step size rather than better directions.
This part (``keras-newton-bench study --parts lr --learning-rates …``) trains
every method's baseline and each Newton variant at every learning rate ×
seed, and compares each Newton row with

* (a) the baseline at the **same** learning rate, and
* (b) the baseline at **its own best** learning rate, chosen by the mean
  **validation** exact match over seeds (never on test), reported on test.

Both comparisons give Δ (difference of mean test exact match) and the
two-sided Welch p (:func:`keras_newton.bench.results.welch_p_value`). If the
gain of (a) vanishes in (b), the Newton loss did what a better learning rate
does. Each row also says whether its learning rate is that row's own best
(by validation), so "each at its best" can be read off too.

λ per method and variant: the method entry's own ``dampings``
(``--methods sorter=neural_sort,dampings=hessian:0.0001+fisher:0.01``), else
the sweep's best λ (the finished sweep of the same study).

Runs are grid runs (:mod:`keras_newton.bench.grid`), resumable, one folder per
learning rate: ``<output_dir>/lr/lr<η>/runs/<method>/<variant>/seed<k>``.
Files in ``<output_dir>/lr/``: ``lr_control.md`` / ``.csv`` / ``.json`` (the
comparison), ``lr_control.png`` (test exact match against the learning rate,
log axis, one panel per method) and ``lr_runs.*`` (the usual grid files, with
the learning rate in every row label).

Example:
  >>> rows = [{"method": "m", "newton": "none", "damping": None, "seed": s,
  ...          "learning_rate": lr, "val_exact_match": v, "exact_match": t}
  ...         for s in (0, 1) for lr, v, t in ((1e-3, 0.5, 0.1), (3e-3, 0.2, 0.9))]
  >>> best_baseline_learning_rates(rows)
  {'m': 0.001}
"""

from __future__ import annotations

import math
import os
from typing import Callable, Sequence

from keras_newton.bench import plots, portable_numerics, results
from keras_newton.bench.grid import (
    TASKS,
    PlannedRun,
    execute_runs,
    plan_grid,
    split_plan,
    write_grid_files,
)

SELECTION = "exact_match"


def format_learning_rate(learning_rate: float) -> str:
    """``"0.0003"``: a learning rate in labels, tables and folder names."""
    return f"{float(learning_rate):g}"


def method_label(method: dict, base_config: dict) -> str:
    """The label a method entry gets in every table (the task's ``describe``)."""
    _, describe, defaults = TASKS["sort"]
    options, _ = split_plan(method)
    return describe({**defaults, **base_config, **options})


def variants_needing_a_best_damping(methods: Sequence[dict], newton: Sequence[str]) -> bool:
    """Whether some method × variant has no λ of its own (then the sweep's best is used)."""
    for method in methods:
        _, plan = split_plan(method)
        own = plan.get("dampings", {})
        if any(v not in own for v in plan.get("newton", newton) if v != "none"):
            return True
    return False


def lr_runs(methods: Sequence[dict], newton: Sequence[str], learning_rates: Sequence[float],
            seeds: Sequence[int], output_dir: str, base_config: dict,
            best: dict | None = None) -> list[PlannedRun]:
    """Baseline and Newton variants of every method at every learning rate.

    Args:
      methods: sorting method entries; an entry's own ``newton``, ``seeds``
        and ``dampings`` apply (see :data:`keras_newton.bench.grid.PLAN_KEYS`).
      newton: Newton variants (the baseline is always added).
      learning_rates: Adam learning rates.
      seeds: weight seeds (unless an entry has its own).
      output_dir: the part's folder; each learning rate gets ``lr<η>/``.
      base_config: the sorting task configuration.
      best: ``{(method label, variant): λ}`` for variants without their own λ.

    Raises:
      ValueError: a variant has neither its own λ nor a best λ.
    """
    runs = []
    for learning_rate in learning_rates:
        config = dict(base_config, learning_rate=float(learning_rate))
        folder = os.path.join(output_dir, f"lr{format_learning_rate(learning_rate)}")
        for method in methods:
            options, plan = split_plan(method)
            label = method_label(method, config)
            variants = [v for v in plan.get("newton", newton) if v != "none"]
            dampings = dict(plan.get("dampings", {}))
            for variant in variants:
                if variant not in dampings:
                    if (label, variant) not in (best or {}):
                        raise ValueError(
                            f"no λ for {label} · {variant}: give the method its own "
                            f"(dampings={variant}:0.01) or run the sweep first")
                    dampings[variant] = best[(label, variant)]
            entry = dict(options, newton=["none", *variants], dampings=dampings)
            if "seeds" in plan:
                entry["seeds"] = plan["seeds"]
            planned, _ = plan_grid("sort", [entry], ["none"], seeds, folder,
                                   base_config=config)
            runs += planned
    return runs


def _group_values(records: Sequence[dict], key: str) -> dict[tuple, list[float]]:
    """``{(method, newton, damping, learning rate): [values over seeds]}``."""
    groups: dict[tuple, list[float]] = {}
    for record in records:
        damping = None if record["newton"] == "none" else record["damping"]
        group = (record["method"], record["newton"], damping, float(record["learning_rate"]))
        value = record.get(key)  # a NaN metric comes back from JSON as None
        groups.setdefault(group, []).append(math.nan if value is None else float(value))
    return groups


def _best_by_validation(validation: dict[float, list[float]]) -> float:
    """The learning rate of the highest mean validation value (ties: the smaller)."""
    return max(validation, key=lambda lr: (results.mean_std(validation[lr])[0], -lr))


def best_baseline_learning_rates(records: Sequence[dict],
                                 selection: str = SELECTION) -> dict[str, float]:
    """``{method: learning rate}`` of the baseline's best mean *validation* ``selection``.

    Test values play no part in the choice; ties go to the smaller rate.
    """
    by_method: dict[str, dict[float, list[float]]] = {}
    for (method, newton, _, lr), values in _group_values(records, f"val_{selection}").items():
        if newton == "none":
            by_method.setdefault(method, {})[lr] = values
    return {method: _best_by_validation(values) for method, values in by_method.items()}


def lr_comparison(records: Sequence[dict], selection: str = SELECTION) -> list[dict]:
    """One row per method × variant × learning rate, with both baseline comparisons.

    Args:
      records: run records with ``method``, ``newton``, ``damping``,
        ``learning_rate``, ``variant``, ``val_<selection>`` and ``<selection>``
        (the test value at the checkpoint selected on validation).
      selection: the metric compared (exact match).

    Returns:
      Rows (baselines first within a method) with ``test`` and ``validation``
      (mean, std, count), ``best_lr`` (this row's own best rate by
      validation), and for Newton rows ``delta_equal_lr`` / ``p_equal_lr``
      (against the baseline at the same rate), ``baseline_best_lr`` and
      ``delta_best_baseline`` / ``p_best_baseline`` (against the baseline at
      its best rate). Δ are differences of mean test values (fractions).
    """
    test = _group_values(records, selection)
    validation = _group_values(records, f"val_{selection}")
    best_baseline = best_baseline_learning_rates(records, selection)
    labels = {}
    for record in records:
        damping = None if record["newton"] == "none" else record["damping"]
        labels.setdefault((record["method"], record["newton"], damping), record["variant"])
    # Order: methods as first seen, the baseline first, variants as first seen, rates up.
    methods = list(dict.fromkeys(key[0] for key in labels))
    variants = list(labels)
    keys = sorted(test, key=lambda k: (methods.index(k[0]), k[1] != "none",
                                       variants.index(k[:3]), k[3]))
    rows = []
    for key in keys:
        method, newton, damping, lr = key
        own = {k[3]: validation[k] for k in validation if k[:3] == key[:3]}
        row = {"method": method, "variant": labels[key[:3]], "newton": newton,
               "damping": damping, "learning_rate": lr, "seeds": len(test[key]),
               "test": results.mean_std(test[key]),
               "validation": results.mean_std(validation[key]),
               "best_lr": _best_by_validation(own) == lr}
        if newton != "none":
            equal = test.get((method, "none", None, lr))
            best_lr = best_baseline.get(method)
            best = test.get((method, "none", None, best_lr)) if best_lr is not None else None
            row.update(_comparison("equal_lr", test[key], equal))
            row["baseline_best_lr"] = best_lr
            row.update(_comparison("best_baseline", test[key], best))
        rows.append(row)
    return rows


def _comparison(name: str, newton: Sequence[float], baseline: Sequence[float] | None) -> dict:
    if not baseline:
        return {f"delta_{name}": None, f"p_{name}": None}
    delta = results.mean_std(newton)[0] - results.mean_std(baseline)[0]
    return {f"delta_{name}": delta, f"p_{name}": results.welch_p_value(newton, baseline)}


def _points(delta: float | None) -> str:
    return "–" if delta is None or not math.isfinite(delta) else f"{delta * 100:+.2f}"


def lr_table(rows: Sequence[dict]) -> str:
    """Markdown: test exact match per row and both baseline comparisons."""
    lines = ["**Learning-rate control: test exact match (%, mean ± std over seeds); Δ "
             "(points) and two-sided Welch p against the baseline at the same learning "
             "rate and at the baseline's own best learning rate (chosen on validation); "
             "★ marks each row's own best rate by validation (bold p < 0.05)**", "",
             "| method | variant | lr | test exact_match (%) | val exact_match (%) | "
             "Δ same lr | p same lr | baseline best lr | Δ vs best baseline | "
             "p vs best baseline | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        newton = row["newton"] != "none"
        best_lr = row.get("baseline_best_lr")
        cells = [row["method"],
                 row["variant"].split(" · ", 1)[-1],
                 format_learning_rate(row["learning_rate"]) + (" ★" if row["best_lr"] else ""),
                 results.format_cell(row["test"]), results.format_cell(row["validation"]),
                 _points(row.get("delta_equal_lr")) if newton else "–",
                 results.format_p_value(row.get("p_equal_lr")) if newton else "–",
                 format_learning_rate(best_lr) if newton and best_lr is not None else "–",
                 _points(row.get("delta_best_baseline")) if newton else "–",
                 results.format_p_value(row.get("p_best_baseline")) if newton else "–",
                 str(row["seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("method", "variant", "newton", "damping", "learning_rate", "seeds",
               "exact_match_mean", "exact_match_std", "val_exact_match_mean",
               "val_exact_match_std", "best_lr", "delta_equal_lr", "p_equal_lr",
               "baseline_best_lr", "delta_best_baseline", "p_best_baseline")


def csv_rows(rows: Sequence[dict]) -> list[dict]:
    """Flat rows of :func:`lr_comparison` for :data:`CSV_COLUMNS`."""
    flat = []
    for row in rows:
        entry = {k: v for k, v in row.items() if k not in ("test", "validation")}
        entry["exact_match_mean"], entry["exact_match_std"], _ = row["test"]
        entry["val_exact_match_mean"], entry["val_exact_match_std"], _ = row["validation"]
        flat.append(entry)
    return flat


def write_lr_files(output_dir: str, rows: Sequence[dict], config: dict) -> dict[str, str]:
    """``lr_control.md`` / ``.csv`` / ``.json`` and ``lr_control.png`` in ``output_dir``."""
    table = lr_table(rows)
    json_rows = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}
                 for row in rows]
    return {
        "markdown": results.atomic_write_text(os.path.join(output_dir, "lr_control.md"),
                                              table),
        "csv": results.atomic_write_text(os.path.join(output_dir, "lr_control.csv"),
                                         results.csv_text(csv_rows(rows), CSV_COLUMNS)),
        "json": results.atomic_write_json(os.path.join(output_dir, "lr_control.json"), {
            "config": config, "selection": f"baseline's best learning rate by mean "
                                           f"validation {SELECTION}",
            "versions": results.library_versions(),
            "numerics": portable_numerics.in_force(), "rows": json_rows}),
        "plot": plot_lr(rows, os.path.join(output_dir, "lr_control.png")),
    }


def plot_lr(rows: Sequence[dict], path: str) -> str:
    """Test exact match (± std over seeds) against the learning rate, per variant."""
    rates = sorted({float(row["learning_rate"]) for row in rows})
    with plots.method_panels(path, rows, "learning rate (Adam)", width=4.4,
                             x_ticks=rates) as panels:
        for ax, method, mine in panels:
            newton_of = {row["variant"]: row["newton"] for row in mine}
            for variant, newton in newton_of.items():
                points = sorted((r["learning_rate"], r["test"]) for r in mine
                                if r["variant"] == variant)
                baseline = newton == "none"
                ax.errorbar([p[0] for p in points], [100 * p[1][0] for p in points],
                            yerr=[100 * p[1][1] for p in points], marker="o", markersize=3,
                            capsize=2, color="grey" if baseline else None,
                            label=variant.split(" · ", 1)[-1])
    return path


def run_lr_control(methods: Sequence[dict], newton: Sequence[str],
                   learning_rates: Sequence[float], seeds: Sequence[int], output_dir: str, *,
                   base_config: dict, best: dict | None = None,
                   shard: tuple[int, int] | None = None, verbose: int | str = 0,
                   jit_compile: bool = True,
                   log: Callable[[str], None] = print) -> dict:
    """Trains (or reloads) the part's runs and writes its files (module docstring).

    Returns:
      ``{"records", "rows", "table", "paths"}``; only ``records`` for a shard.
    """
    if not learning_rates or any(not (float(lr) > 0) for lr in learning_rates):
        raise ValueError(f"learning rates must be > 0, got {list(learning_rates)}")
    runs = lr_runs(methods, newton, learning_rates, seeds, output_dir, base_config, best)
    records = execute_runs(runs, shard=shard, verbose=verbose, jit_compile=jit_compile,
                           log=log)
    if shard is not None:
        return {"records": [r for r in records if r is not None]}
    for run, record in zip(runs, records):
        record["learning_rate"] = float(run.task.config["learning_rate"])
    rows = lr_comparison(records)
    config = {"methods": list(methods), "newton": list(newton),
              "learning_rates": [float(lr) for lr in learning_rates],
              "seeds": [int(s) for s in seeds], "base_config": dict(base_config),
              "dampings": {f"{r['method']} · {r['newton']}": r["damping"] for r in rows
                           if r["newton"] != "none"}}
    paths = write_lr_files(output_dir, rows, config)
    # The usual grid files, one row per variant and learning rate: labels carry
    # the rate, so the grid's Δ / p compare with the baseline at the same rate.
    relabeled = [dict(r, method=f"{r['method']} @ lr={format_learning_rate(r['learning_rate'])}",
                      variant=f"{r['variant']} @ lr={format_learning_rate(r['learning_rate'])}")
                 for r in records]
    paths["runs"] = write_grid_files(output_dir, "lr_runs", relabeled, runs[0].task, "sort",
                                     {"study_lr": config})
    return {"records": records, "rows": rows, "table": lr_table(rows), "paths": paths}


__all__ = ["best_baseline_learning_rates", "format_learning_rate", "lr_comparison", "lr_runs",
           "lr_table", "plot_lr", "run_lr_control", "variants_needing_a_best_damping",
           "write_lr_files"]
