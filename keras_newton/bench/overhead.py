"""Step-time overhead of Newton losses, measured side by side.

The paper's cost claim is that a Newton loss adds little to a training step
because the curvature lives in output space (``m`` values per sample), not
in weight space. On a shared machine absolute times are noise, so the
variants are measured in one process, *interleaved* (one step of each
variant per round, the order rotating every round), and summarized by the
median step time; the reported number is the ratio

.. math::

    r_v = \\frac{\\operatorname{median}_k t_{v,k}}{\\operatorname{median}_k t_{\\text{none},k}} .

Each variant is compiled and warmed up first; its first step (tracing and
XLA compilation included) is reported separately, not in the ratio. Every
step trains on the same fixed batch. Each Newton variant uses its own
Tikhonov λ (``dampings``), as in training.

Example:
  >>> out = measure_overhead(task, ["none", "hessian", "fisher"],
  ...                        rounds=20)                  # doctest: +SKIP
  >>> out["ratios"]["hessian"]                           # doctest: +SKIP
"""

from __future__ import annotations

import statistics
import time
from typing import Mapping, Sequence

from keras_newton.bench.task import Task, Variant, build_variant_model, hessian_options_for


def measure_overhead(task: Task, newton: Sequence[str], *, rounds: int = 30,
                     warmup: int = 3, damping: float = 1e-2,
                     dampings: Mapping[str, float] | None = None,
                     hessian_options: dict | None = None, seed: int = 0,
                     jit_compile: bool = True) -> dict:
    """Median step times and their ratios to the ``"none"`` variant.

    Args:
      task: the task (one batch of its training stream is used).
      newton: variants to time; ``"none"`` is added if missing.
      rounds: timed steps per variant.
      warmup: untimed steps per variant after compilation.
      damping: Tikhonov λ of the Newton variants missing from ``dampings``.
      dampings: Tikhonov λ per Newton variant (e.g. ``presets.DAMPINGS``).
      hessian_options: affordable-Hessian options of the ``"hessian"``
        variant (see :class:`keras_newton.bench.task.Variant`).
      seed: weight seed (all variants start from the same weights).
      jit_compile: XLA on (default) or off.

    Returns:
      ``{"median_seconds", "compile_seconds", "ratios", "dampings",
      "rounds", "batch_shape"}``; the first four are dicts keyed by variant
      (``compile_seconds``: the first step, compilation included).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = ["none"] + [v for v in newton if v != "none"]
    used_dampings = {name: float((dampings or {}).get(name, damping))
                     for name in names if name != "none"}
    x, y = next(iter(task.train_stream(0)))
    models, compile_seconds = {}, {}
    for name in names:
        variant = Variant.from_flags(name, newton=name,
                                     damping=used_dampings.get(name, damping),
                                     **hessian_options_for(name, hessian_options))
        model = build_variant_model(task, variant, seed, jit_compile=jit_compile)
        started = time.perf_counter()
        model.train_on_batch(x, y)
        compile_seconds[name] = time.perf_counter() - started
        for _ in range(warmup):
            model.train_on_batch(x, y)
        models[name] = model
    times: dict[str, list[float]] = {name: [] for name in names}
    for k in range(rounds):
        order = names[k % len(names):] + names[:k % len(names)]
        for name in order:
            started = time.perf_counter()
            models[name].train_on_batch(x, y)  # Returns NumPy values: synchronous.
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "median_seconds": medians,
        "compile_seconds": compile_seconds,
        "ratios": {name: medians[name] / medians["none"] for name in names},
        "dampings": used_dampings,
        "rounds": rounds,
        "batch_shape": list(x.shape),
    }


def overhead_table(label: str, measured: dict) -> str:
    """Markdown rows ``| task | variant | median step (ms) | ratio | first step (s) |``."""
    lines = []
    for name, ratio in measured["ratios"].items():
        lines.append(f"| {label} | {name} | {1e3 * measured['median_seconds'][name]:.1f} | "
                     f"{ratio:.2f} | {measured['compile_seconds'][name]:.2f} |")
    return "\n".join(lines)


OVERHEAD_HEADER = ("| task | variant | median step (ms) | ratio to baseline "
                   "| first step incl. compile (s) |\n"
                   "|---|---|---|---|---|")
