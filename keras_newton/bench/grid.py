"""Grids of runs: methods × training variants × seeds, summarized like the paper.

For every method configuration (a sorter, a path loss, a classifier), every
training variant (the loss itself, Newton-Hessian, Newton-Fisher, …) and
every seed, one resumable run (:func:`keras_newton.bench.training.run_training`)
is made in ``<output_dir>/runs/<method>/<variant>/seed<k>``. The records are
summarized per row as mean ± sample standard deviation over seeds and written
as ``<name>.md``, ``<name>.csv``, ``<name>.json`` (full configuration and
library versions) and ``<name>.png`` (test metric against training steps),
all atomically. Rerunning a finished or interrupted grid reuses what is done.

Example:
  >>> out = run_grid("sort", [{"sorter": "neural_sort"}], ["none", "hessian"],
  ...                [0, 1], "results/", base_config={...})   # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import time
from typing import Callable, Sequence

import keras

from keras_newton.bench import classify_task, path_task, plots, results, sort_task
from keras_newton.bench.task import Task, Variant, build_variant_model, hessian_options_for
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
                  hessian_options: dict | None = None) -> str:
    """Row label, e.g. ``"neural_sort(τ=1) · Newton-Hessian (λ=0.01, rank 2)"``.

    ``hessian_options`` (``hessian_samples``, ``hessian_rank``,
    ``hessian_refresh_every``) are named when they differ from the exact,
    every-step Hessian.
    """
    if newton == "none":
        return f"{method} · baseline"
    details = [f"λ={damping:g}"]
    options = hessian_options or {}
    if options.get("hessian_samples") is not None:
        details.append(f"{options['hessian_samples']} samples")
    if options.get("hessian_rank") is not None:
        details.append(f"rank {options['hessian_rank']}")
    if options.get("hessian_refresh_every", 1) != 1:
        details.append(f"refresh every {options['hessian_refresh_every']}")
    if options.get("hessian_products", "autodiff") != "autodiff":
        details.append(options["hessian_products"].replace("_", " "))
    return f"{method} · {NEWTON_LABELS[newton]} ({', '.join(details)})"


def run_grid(task_name: str, methods: Sequence[dict], newton: Sequence[str],
             seeds: Sequence[int], output_dir: str, *, base_config: dict | None = None,
             dampings: dict[str, float] | None = None,
             hessian_options: dict | None = None, name: str = "results",
             verbose: int | str = "auto", jit_compile: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Runs every method × Newton variant × seed and writes the results files.

    Args:
      task_name: ``"sort"``, ``"path"`` or ``"classify"``.
      methods: per method, config entries overriding ``base_config``.
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
      log: where progress lines go.

    Returns:
      ``{"records", "table", "paths", "seconds"}``.
    """
    if task_name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {task_name!r}")
    make_task, describe, defaults = TASKS[task_name]
    base = dict(defaults, **(base_config or {}))
    dampings = dict(dampings or {})
    started = time.perf_counter()
    records, configs = [], []
    for method_options in methods:
        config = dict(base, **method_options)
        task = make_task(config)
        method = describe(task.config)
        configs.append({"method": method, **task.config})
        for variant_name in newton:
            damping = float(dampings.get(variant_name, base.get("damping", 1.0)))
            options = hessian_options_for(variant_name, hessian_options)
            label = variant_label(method, variant_name, damping, options)
            variant = Variant(label, newton=variant_name, damping=damping, **options)
            keras.backend.clear_session()
            model = None  # Compiled once per variant, reused (re-initialized) per seed.
            for seed in seeds:
                run_dir = os.path.join(output_dir, "runs", slug(method), slug(variant_name),
                                       f"seed{int(seed)}")
                log(f"== {label} · seed {seed}  ({run_dir})")
                if model is None and not os.path.exists(os.path.join(run_dir, RECORD_FILE)):
                    model = build_variant_model(task, variant, int(seed), jit_compile)
                record = run_training(task, variant, int(seed), run_dir, verbose=verbose,
                                      jit_compile=jit_compile, model=model)
                record["method"] = method
                records.append(record)
    metrics = list(task.metrics)
    full_config = {"task": task_name, "methods": configs, "newton": list(newton),
                   "dampings": {v: float(dampings.get(v, base.get("damping", 1.0)))
                                for v in newton if v != "none"},
                   "hessian_options": dict(hessian_options or {}),
                   "seeds": [int(s) for s in seeds], "jit_compile": jit_compile}
    selection = task.selection
    scales = {m: (1.0 if m == "cost_ratio" else 100.0) for m in metrics}
    title = (f"{task_name}: test {', '.join(metrics)} at the best validation {selection} "
             f"(mean ± std over {len(seeds)} seeds, ×100 where marked)")
    paths = results.write_results(output_dir, name, records, metrics, full_config,
                                  title=title, scales=scales)
    paths["plot"] = plots.plot_metric(
        records, f"test_{selection}", os.path.join(output_dir, f"{name}.png"),
        title=f"{task_name}: test {selection} (mean ± std over seeds)",
        ylabel=f"test {selection}")
    with open(paths["markdown"], encoding="utf-8") as stream:
        table = stream.read()
    return {"records": records, "table": table, "paths": paths,
            "seconds": time.perf_counter() - started}
