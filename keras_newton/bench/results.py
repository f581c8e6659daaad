"""Results files of the benchmark: Markdown table, CSV and JSON, written atomically.

Every run of a grid is one record: its full configuration, its evaluation
history (metric values every ``eval_every`` steps), the metrics of the
selected checkpoint (best validation metric) and timings. A grid summarizes
the records per variant as mean ± standard deviation over seeds, the way the
paper's tables do:

.. math::

    \\bar m = \\frac1S \\sum_{s=1}^S m_s, \\qquad
    \\sigma = \\sqrt{\\frac1{S-1} \\sum_s (m_s - \\bar m)^2}

(sample standard deviation; 0 for a single seed). Every Newton row is
compared with the baseline of the same method (same configuration, loss
trained directly) by a two-sided Welch t-test per metric (unequal variances,
:func:`scipy.stats.ttest_ind` with ``equal_var=False``):

.. math::

    t = \\frac{\\bar a - \\bar b}{\\sqrt{s_a^2/n_a + s_b^2/n_b}},

with the Welch–Satterthwaite degrees of freedom; ``p < 0.05`` is marked in
bold in the Markdown table, as the paper marks significant results.

Files are first written to a temporary file in the target directory, flushed
to disk and then moved over the target with ``os.replace``
(:func:`atomic_write_file`), so a reader (or a killed run) never sees a
half-written file.

Example:
  >>> rows = [{"variant": "hessian", "seed": 0, "exact_match": 0.5}]
  >>> summarize(rows, ["exact_match"])[0]["exact_match"]
  (0.5, 0.0, 1)

References:
  Welch, "The generalization of 'Student's' problem when several different
  population variances are involved", Biometrika 34, 1947.
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024 (tables report mean ± std).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import tempfile
import warnings
from typing import Any, Callable, Iterable, Sequence

from keras_newton.bench._killpoint import kill_point

from keras_newton.bench import portable_numerics


def _fsync_directory(directory: str) -> None:
    # Makes a rename durable (power loss); not all platforms can open a folder.
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write_file(path: str, write: Callable[[str], Any], *, label: str | None = None,
                      suffix: str = ".part") -> str:
    """Writes ``path`` by ``write(temporary)`` on a temporary file, then ``os.replace``.

    The temporary file lies in the target's folder (``.tmp-<name>-*<suffix>``,
    so a writer that wants a known extension gets it), is flushed to disk and
    then renamed over ``path``: a reader, or a run resumed after a kill, sees
    either the old file or the new one, never a part of it. A kill leaves a
    stray temporary file, which the next write of the same file deletes (one
    writer per file is assumed).

    Args:
      path: the target file.
      write: writes the whole content to the path it is given.
      label: names the kill points of this write (test aid, see
        :mod:`keras_newton.bench._killpoint`): ``<label>:before-write``,
        ``:torn``, ``:before-rename``, ``:after-rename``; the file's name by default.
      suffix: end of the temporary file's name.

    Returns:
      ``path``.
    """
    label = label or os.path.basename(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = f".tmp-{os.path.basename(path)}-"
    for name in os.listdir(directory):
        if name.startswith(prefix):  # Left by a writer of this file that was killed.
            os.remove(os.path.join(directory, name))
    kill_point(f"{label}:before-write")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=suffix)
    os.close(handle)
    try:
        write(temporary)
        kill_point(f"{label}:torn", torn=temporary)
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        kill_point(f"{label}:before-rename")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_directory(directory)
    kill_point(f"{label}:after-rename")
    return path


def atomic_write_text(path: str, text: str, *, label: str | None = None) -> str:
    """Writes ``text`` to ``path`` atomically (see :func:`atomic_write_file`)."""
    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)

    return atomic_write_file(path, write, label=label)


def atomic_write_json(path: str, data: Any, *, label: str | None = None) -> str:
    """Writes ``data`` as indented JSON (NaN written as ``null``), atomically."""
    return atomic_write_text(path, json.dumps(_jsonable(data), indent=2) + "\n", label=label)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # NumPy scalars.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def library_versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries a result depends on."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for module in ("tensorflow", "keras", "tensorflow_probability", "numpy",
                   "keras_newton", "tensorflow_datasets", "sklearn"):
        imported = sys.modules.get(module)
        if imported is None:
            try:
                imported = __import__(module)
            except Exception:  # Optional libraries: record that they are absent.
                versions[module] = "not installed"
                continue
        versions[module] = str(getattr(imported, "__version__", "unknown"))
    return versions


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """``(mean, sample std, count)`` of the finite values (NaN if none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return math.nan, math.nan, 0
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, 0.0, len(finite)
    variance = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return mean, math.sqrt(variance), len(finite)


def summarize(rows: Iterable[dict], metrics: Sequence[str], key: str = "variant") -> list[dict]:
    """Groups rows by ``key`` (first-seen order); each metric → (mean, std, n).

    Each entry also carries what the paper's tables need to compare it with
    its baseline: ``method`` (label of the method configuration), ``config``
    (that method's full configuration dict), ``newton`` (``"none"`` for the
    baseline), ``damping`` (``None`` for the baseline) and ``p_value``
    (metric → two-sided Welch p against the same method's baseline;
    ``None`` on baseline rows), when the rows carry these fields.
    """
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    summary = []
    for name, members in groups.items():
        first = members[0]
        newton = first.get("newton", "none")
        entry = {key: name, "seeds": [m.get("seed") for m in members],
                 "method": first.get("method", name), "config": first.get("config", {}),
                 "newton": newton,
                 "damping": None if newton == "none" else first.get("damping")}
        entry["values"] = {metric: [m.get(metric, math.nan) for m in members]
                           for metric in metrics}
        for metric in metrics:
            entry[metric] = mean_std(entry["values"][metric])
        summary.append(entry)
    _add_welch_tests(summary, metrics)
    return summary


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value of ``mean(a) == mean(b)`` (NaN if undefined).

    Needs two finite values on each side, and some spread: when both samples
    are constant the t statistic divides by zero (scipy then reports p = 0
    for different constants), which says nothing about significance with a
    few seeds, so the result is NaN.

    Example:
      >>> round(welch_p_value([0.1, 0.2, 0.3], [0.5, 0.6, 0.8]), 4)
      0.0209
    """
    from scipy import stats

    a = [float(v) for v in a if v is not None and math.isfinite(float(v))]
    b = [float(v) for v in b if v is not None and math.isfinite(float(v))]
    if len(a) < 2 or len(b) < 2 or (max(a) == min(a) and max(b) == min(b)):
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Constant samples: NaN.
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _add_welch_tests(summary: list[dict], metrics: Sequence[str]) -> None:
    """Gives every Newton entry its Welch p-values against its method's baseline."""
    baselines = {}
    for entry in summary:
        if entry["newton"] == "none":
            baselines.setdefault(entry["method"], entry)
    for entry in summary:
        baseline = baselines.get(entry["method"])
        if entry["newton"] == "none" or baseline is None:
            entry["p_value"] = None
            entry["delta"] = None
            continue
        entry["p_value"] = {m: welch_p_value(entry["values"][m], baseline["values"][m])
                            for m in metrics}
        entry["delta"] = {m: entry[m][0] - baseline[m][0] for m in metrics}


SIGNIFICANCE = 0.05


def format_cell(stats: tuple[float, float, int], scale: float = 100.0, digits: int = 2) -> str:
    """``"mean ± std"`` with the metric scaled (percent by default)."""
    mean, std, count = stats
    if count == 0:
        return "n/a"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def format_p_value(p: float | None) -> str:
    """``"0.012"``; bold below :data:`SIGNIFICANCE`; ``"–"`` for none or NaN."""
    if p is None or not math.isfinite(p):
        return "–"
    text = f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
    return f"**{text}**" if p < SIGNIFICANCE else text


def column_name(metric: str, scale: float) -> str:
    """Table header of a metric: ``"exact_match (%)"`` for scale 100."""
    if scale == 100.0:
        return f"{metric} (%)"
    return metric if scale == 1.0 else f"{metric} (×{scale:g})"


def markdown_table(summary: Sequence[dict], metrics: Sequence[str], key: str = "variant",
                   scales: dict[str, float] | None = None, title: str | None = None) -> str:
    """A Markdown table: per variant ``mean ± std``, Δ and Welch p per metric.

    Δ is the difference of means to the same method's baseline (in the
    metric's displayed unit) and p the two-sided Welch p-value, bold when
    below 0.05; baseline rows show ``–``.
    """
    scales = scales or {}
    lines = [f"**{title}**", ""] if title else []
    header = [key]
    for metric in metrics:
        header += [column_name(metric, scales.get(metric, 100.0)), f"Δ {metric}",
                   f"p {metric}"]
    header.append("seeds")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for entry in summary:
        cells = [str(entry[key])]
        for metric in metrics:
            scale = scales.get(metric, 100.0)
            delta = (entry.get("delta") or {}).get(metric)
            p_value = (entry.get("p_value") or {}).get(metric)
            cells += [format_cell(entry[metric], scale),
                      "–" if delta is None or not math.isfinite(delta)
                      else f"{delta * scale:+.2f}",
                      format_p_value(p_value)]
        cells.append(str(len(entry["seeds"])))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary_rows(summary: Sequence[dict], metrics: Sequence[str]) -> list[dict]:
    """Flat rows of a summary for CSV: mean, std, Δ and p per metric."""
    rows = []
    for entry in summary:
        row = {"variant": entry["variant"], "method": entry["method"],
               "newton": entry["newton"], "damping": entry["damping"],
               "seeds": len(entry["seeds"])}
        for metric in metrics:
            mean, std, _ = entry[metric]
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean, std
            row[f"{metric}_delta"] = (entry.get("delta") or {}).get(metric)
            row[f"{metric}_p_value"] = (entry.get("p_value") or {}).get(metric)
        rows.append(row)
    return rows


def parse_markdown_table(text: str) -> list[dict[str, str]]:
    """Parses the first pipe table in ``text`` into a list of row dicts."""
    rows = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if len(rows) < 2:
        raise ValueError("no Markdown table found")
    split = lambda line: [cell.strip() for cell in line.strip("|").split("|")]
    header = split(rows[0])
    if not all(set(c) <= set("-: ") for c in split(rows[1])):
        raise ValueError("the second table line must be the |---| separator")
    body = [split(r) for r in rows[2:]]
    if any(len(r) != len(header) for r in body):
        raise ValueError("a table row has a different number of cells than the header")
    return [dict(zip(header, r)) for r in body]


def csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """CSV of ``rows`` restricted to ``columns`` (missing entries left empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _jsonable(row.get(c, "")) for c in columns})
    return buffer.getvalue()


def write_results(output_dir: str, name: str, records: Sequence[dict], metrics: Sequence[str],
                  config: dict, title: str | None = None,
                  scales: dict[str, float] | None = None) -> dict[str, str]:
    """Writes ``<name>.md``, ``<name>.csv`` and ``<name>.json`` atomically.

    Args:
      output_dir: directory for the files (created if needed).
      name: file stem.
      records: one dict per run with ``variant``, ``seed``, the final
        ``metrics`` and anything else (history, config, timings).
      metrics: metric names summarized in the table and CSV.
      config: the grid's full configuration (stored in the JSON).
      title: heading of the Markdown table.
      scales: per-metric display factor (default 100, i.e. percent).

    Returns:
      ``{"markdown": path, "csv": path, "summary_csv": path, "json": path}``;
      ``<name>_summary.csv`` holds one row per variant (mean, std, Δ to the
      baseline and Welch p per metric), ``<name>.csv`` one row per run.
    """
    summary = summarize(records, metrics)
    table = markdown_table(summary, metrics, scales=scales, title=title)
    flat_columns = (["variant", "method", "newton", "damping", "seed"] + list(metrics)
                    + [f"final_{m}" for m in metrics]
                    + ["best_step", "steps", "train_seconds"])
    summary_columns = ["variant", "method", "newton", "damping", "seeds"] + [
        f"{m}_{part}" for m in metrics for part in ("mean", "std", "delta", "p_value")]
    paths = {
        "markdown": atomic_write_text(os.path.join(output_dir, f"{name}.md"), table),
        "csv": atomic_write_text(os.path.join(output_dir, f"{name}.csv"),
                                 csv_text(records, flat_columns)),
        "summary_csv": atomic_write_text(
            os.path.join(output_dir, f"{name}_summary.csv"),
            csv_text(summary_rows(summary, metrics), summary_columns)),
        "json": atomic_write_json(os.path.join(output_dir, f"{name}.json"), {
            "config": config,
            "versions": library_versions(),
            "numerics": portable_numerics.in_force(),
            "metrics": list(metrics),
            "summary": [{k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in e.items()} for e in summary],
            "runs": list(records),
        }),
    }
    return paths
