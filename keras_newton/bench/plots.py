"""PNG plots of a grid: a test metric and the diagnostics against training steps.

Each run records ``history`` entries ``{"step": t, "test_<metric>": m, ...}``
at every evaluation. Per variant the curve is the mean over seeds at each
step, with a band of ± one sample standard deviation, as in the results
table (:func:`keras_newton.bench.results.mean_std`; no band for one seed):

.. math::

    \\bar m(t) = \\frac1S \\sum_s m_s(t), \\qquad
    \\sigma(t) = \\sqrt{\\frac1{S-1} \\sum_s (m_s(t) - \\bar m(t))^2}.

Matplotlib is used with the non-interactive ``Agg`` backend (no display
needed) and the file is written atomically (temporary file + ``os.replace``).

Example:
  >>> runs = [{"variant": "a", "history": [{"step": 1, "test_acc": 0.5}]}]
  >>> curves = mean_curves(runs, "test_acc")
  >>> curves["a"][0].tolist(), curves["a"][1].tolist()
  ([1], [0.5])
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import numpy as np


def mean_curves(runs: Sequence[dict], key: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per variant: ``(steps, mean, sample std)`` of ``key`` over the runs' histories.

    Only steps that every run of the variant evaluated are kept, so runs cut
    short do not bias the mean.
    """
    by_variant: dict[str, list[dict[int, float]]] = {}
    for run in runs:
        # JSON stores NaN as null (e.g. the baseline's curvature diagnostics).
        series = {int(h["step"]): math.nan if h[key] is None else float(h[key])
                  for h in run.get("history", []) if key in h}
        by_variant.setdefault(str(run["variant"]), []).append(series)
    curves = {}
    for variant, series_list in by_variant.items():
        common = sorted(set.intersection(*(set(s) for s in series_list)))
        values = np.array([[s[t] for t in common] for s in series_list], dtype=float)
        values = values.reshape(len(series_list), len(common))
        std = (values.std(axis=0, ddof=1) if len(series_list) > 1
               else np.zeros(len(common)))
        curves[variant] = (np.array(common, dtype=int), values.mean(axis=0), std)
    return curves


def plot_metric(runs: Sequence[dict], key: str, path: str, title: str | None = None,
                ylabel: str | None = None) -> str:
    """Draws ``key`` against steps for every variant and writes a PNG to ``path``."""
    curves = mean_curves(runs, key)
    with figure_file(path, figsize=(6.4, 4.2), dpi=110) as (_, axes):
        for variant, (steps, mean, std) in curves.items():
            if steps.size == 0:
                continue
            (line,) = axes.plot(steps, mean, marker="o", markersize=3, label=variant)
            if np.any(std > 0):
                axes.fill_between(steps, mean - std, mean + std, alpha=0.2,
                                  color=line.get_color())
        axes.set_xlabel("training steps")
        axes.set_ylabel(ylabel or key)
        axes.grid(alpha=0.3)
        if title:
            axes.set_title(title, fontsize=10)
        if curves:
            axes.legend(fontsize=8)
    return path


def pyplot():
    """Matplotlib's pyplot on the non-interactive ``Agg`` backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    return plt


def save_figure(figure, path: str) -> str:
    """Writes ``figure`` as a PNG to ``path`` atomically (temporary file + ``os.replace``)."""
    from keras_newton.bench import results

    return results.atomic_write_file(path, lambda temporary: figure.savefig(temporary,
                                                                              format="png"),
                                     suffix=".png")


@contextlib.contextmanager
def figure_file(path: str, nrows: int = 1, ncols: int = 1, **subplots_options):
    """Yields ``(figure, axes)``; on exit lays them out and writes the PNG (atomically)."""
    plt = pyplot()
    figure, axes = plt.subplots(nrows, ncols, **subplots_options)
    try:
        yield figure, axes
        figure.tight_layout()
        save_figure(figure, path)
    finally:
        plt.close(figure)


@contextlib.contextmanager
def method_panels(path: str, rows, x_label: str, width: float = 4.3,
                  x_ticks: Sequence[float] | None = None):
    """Yields ``[(axis, method, rows of that method)]``: one log-x panel per method.

    On exit each panel gets its labels, title, grid and legend, and the PNG
    is written (the layout the study's per-method plots share). ``x_ticks``
    labels exactly those x values (``%g``), without minor labels: a log axis
    spanning about one decade otherwise labels its minor ticks on top of
    each other.
    """
    methods = list(dict.fromkeys(row["method"] for row in rows))
    with figure_file(path, 1, len(methods), figsize=(width * len(methods), 3.6), dpi=100,
                     squeeze=False) as (_, axes):
        panels = [(ax, method, [row for row in rows if row["method"] == method])
                  for ax, method in zip(axes[0], methods)]
        yield panels
        for ax, method, _ in panels:
            ax.set_xscale("log")
            if x_ticks is not None:
                from matplotlib.ticker import NullFormatter  # matplotlib loads lazily
                ax.set_xticks(list(x_ticks), [f"{x:g}" for x in x_ticks])
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(x_label)
            ax.set_ylabel("test exact match (%)")
            ax.set_title(method, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)


DIAGNOSTIC_PANELS = (
    ("grad_norm_spread", "per-set ‖g‖: max / median", True),
    ("grad_norm_median", "per-set ‖g‖: median", True),
    ("score_std", "score std within a set", True),
    ("curvature_eig_min", "min eig of M + λI (order dirs)", True),
    ("curvature_eig_max", "max eig of M + λI (order dirs)", True),
    ("newton_cosine", "cos(Newton step, gradient)", False),
    ("step_scale", "‖Newton step‖ / ‖gradient‖", True),
    ("damping", "damping λ of the step", True),
)


def plot_diagnostics(runs: Sequence[dict], path: str, title: str | None = None) -> str:
    """One panel per diagnostic (:mod:`keras_newton.bench.diagnostics`) against steps.

    Curves are means over seeds per variant (``diag_<name>`` history keys);
    variants without a value (the baseline's curvature panels) are skipped.
    """
    # One colour per variant in every panel (panels skip variants without values).
    colors = {variant: f"C{i % 10}" for i, variant in
              enumerate(dict.fromkeys(str(run["variant"]) for run in runs))}
    with figure_file(path, 3, 3, figsize=(13, 9), dpi=100) as (figure, axes):
        for ax, (name, label, log_scale) in zip(axes.flat, DIAGNOSTIC_PANELS):
            for variant, (steps, mean, _) in mean_curves(runs, f"diag_{name}").items():
                finite = np.isfinite(mean) & ((mean > 0) if log_scale else True)
                if finite.any():
                    ax.plot(steps[finite], mean[finite], marker="o", markersize=2,
                            label=variant, color=colors[variant],
                            linestyle="-" if "baseline" in variant else "--")
            if log_scale:
                ax.set_yscale("log")
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("training steps", fontsize=8)
            ax.grid(alpha=0.3)
        handles, labels = axes.flat[0].get_legend_handles_labels()  # Every variant.
        axes.flat[-1].axis("off")
        if handles:
            axes.flat[-1].legend(handles, labels, fontsize=7, loc="center")
        if title:
            figure.suptitle(title, fontsize=10)
    return path
