"""Tables and plots of the efficacy study (:mod:`keras_newton.bench.study`).

Markdown tables of the sweep's best λ, of adaptive damping against the best
grid λ and of the gain against training length, and the two figures (test
exact match against λ; Newton − baseline against the step budget). Every
p-value is a two-sided Welch test (:func:`keras_newton.bench.results.welch_p_value`).

References:
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024, Table 1 and Fig. 4.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from keras_newton.bench import plots, results
from keras_newton.bench.task import ADAPTIVE, format_damping

# The metric the study selects and reports on (validation picks, test reports).
SELECTION = "exact_match"


def length_table(gains: Sequence[dict], budgets: Sequence[int]) -> str:
    """Markdown: per Newton row, ``Δ (p)`` of test exact match at every budget."""
    lines = ["**Gain vs training length: test exact match, Newton − baseline (points), "
             "two-sided Welch p in parentheses (bold p < 0.05)**", "",
             "| variant | " + " | ".join(f"{b} steps" for b in budgets) + " |",
             "|---|" + "---|" * len(budgets)]
    for entry in gains:
        cells = [f"{b['delta'] * 100:+.2f} ({results.format_p_value(b['p_value'])})"
                 if math.isfinite(b["delta"]) else "n/a" for b in entry["budgets"]]
        lines.append(f"| {entry['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def best_table(summary: Sequence[dict], best: dict) -> str:
    """Markdown: the best λ per method and variant, and its row of the sweep."""
    lines = ["**Best λ per method and variant (highest mean validation exact match)**", "",
             "| method | variant | best λ | test exact_match (%) | Δ (points) | p |",
             "|---|---|---|---|---|---|"]
    for entry in summary:
        if entry["newton"] == "none" or best.get((entry["method"], entry["newton"])) != \
                entry["damping"]:
            continue
        delta = (entry.get("delta") or {}).get(SELECTION)
        lines.append(
            f"| {entry['method']} | {entry['newton']} | {format_damping(entry['damping'])} | "
            f"{results.format_cell(entry[SELECTION])} | "
            f"{'–' if delta is None else f'{delta * 100:+.2f}'} | "
            f"{results.format_p_value((entry.get('p_value') or {}).get(SELECTION))} |")
    return "\n".join(lines) + "\n"


def adaptive_table(records: Sequence[dict], best: dict) -> str:
    """Markdown: baseline, best grid λ and adaptive damping per method and variant.

    Test exact match (mean ± std over seeds, %); p-values are two-sided Welch
    tests of each column against the baseline and of adaptive against the
    best grid λ. Empty when no run used adaptive damping.
    """
    def values(method, newton, damping=None):
        return [float(r[SELECTION]) for r in records if r["method"] == method
                and r["newton"] == newton and (damping is None or r["damping"] == damping)]

    keys = list(dict.fromkeys((r["method"], r["newton"]) for r in records
                              if r["newton"] != "none" and r["damping"] == ADAPTIVE))
    if not keys:
        return ""
    lines = ["**Adaptive damping against the best grid λ: test exact match (%), two-sided "
             "Welch p against the baseline (adaptive: also against the best λ)**", "",
             "| method | variant | baseline | best λ | best-λ result | p | adaptive | p | "
             "p vs best λ |", "|---|---|---|---|---|---|---|---|---|"]
    for method, newton in keys:
        baseline = values(method, "none")
        adaptive = values(method, newton, ADAPTIVE)
        damping = best.get((method, newton))
        grid = values(method, newton, damping) if damping is not None else []

        def cell(sample):
            return results.format_cell(results.mean_std(sample)) if sample else "–"

        def p(a, b):
            return results.format_p_value(results.welch_p_value(a, b)) if a and b else "–"

        lines.append(
            f"| {method} | {newton} | {cell(baseline)} | "
            f"{'–' if damping is None else format_damping(damping)} | {cell(grid)} | "
            f"{p(grid, baseline)} | {cell(adaptive)} | {p(adaptive, baseline)} | "
            f"{p(adaptive, grid)} |")
    return "\n".join(lines) + "\n"


def plot_sweep(summary: Sequence[dict], path: str) -> str:
    """Test exact match against λ per method (panels) and variant; baseline band."""
    with plots.method_panels(path, summary, "damping λ", width=4.2) as panels:
        for ax, method, rows in panels:
            for entry in rows:
                if entry["newton"] == "none":
                    mean, std, _ = entry[SELECTION]
                    ax.axhspan(100 * (mean - std), 100 * (mean + std), color="grey", alpha=0.25)
                    ax.axhline(100 * mean, color="grey", label="baseline ± std")
            for newton in dict.fromkeys(e["newton"] for e in rows if e["newton"] != "none"):
                points = sorted((e["damping"], e[SELECTION]) for e in rows
                                if e["newton"] == newton and e["damping"] != ADAPTIVE)
                x = np.array([p[0] for p in points])
                y = np.array([100 * p[1][0] for p in points])
                err = np.array([100 * p[1][1] for p in points])
                line = ax.errorbar(x, y, yerr=err, marker="o", markersize=3, capsize=2,
                                   label=newton)
                for e in rows:  # adaptive damping has no λ: a dashed level
                    if e["newton"] == newton and e["damping"] == ADAPTIVE:
                        ax.axhline(100 * e[SELECTION][0], linestyle="--",
                                   color=line[0].get_color(), label=f"{newton}, adaptive λ")
    return path


def plot_length(gains: Sequence[dict], path: str) -> str:
    """Newton − baseline test exact match (points) against the step budget."""
    with plots.figure_file(path, figsize=(7, 4.2), dpi=100) as (_, ax):
        for entry in gains:
            steps = [b["steps"] for b in entry["budgets"]]
            ax.errorbar(steps, [100 * b["delta"] for b in entry["budgets"]],
                        yerr=[100 * b["delta_std"] for b in entry["budgets"]], marker="o",
                        markersize=3, capsize=2, label=entry["variant"])
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("training steps (budget)")
        ax.set_ylabel("Newton − baseline, test exact match (points)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return path
