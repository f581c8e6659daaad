"""PNG plots of a grid: a test metric against training steps, one curve per variant.

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

import os
import tempfile
from typing import Sequence

import numpy as np


def mean_curves(runs: Sequence[dict], key: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per variant: ``(steps, mean, sample std)`` of ``key`` over the runs' histories.

    Only steps that every run of the variant evaluated are kept, so runs cut
    short do not bias the mean.
    """
    by_variant: dict[str, list[dict[int, float]]] = {}
    for run in runs:
        series = {int(h["step"]): float(h[key]) for h in run.get("history", []) if key in h}
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
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    curves = mean_curves(runs, key)
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    try:
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
        figure.tight_layout()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".png")
        os.close(handle)
        try:
            figure.savefig(temporary, format="png")
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    finally:
        plt.close(figure)
    return path
