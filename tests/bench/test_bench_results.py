"""Results files (Markdown, CSV, JSON) and plots of the benchmark: written, parseable, right."""

import csv
import io
import json
import math
import os

import numpy as np
import pytest

from keras_newton.bench import plots, results


def _records():
    # Two variants × three seeds with known values; history for the plot.
    rows = []
    for variant, values in (("baseline", [0.5, 0.6, 0.7]), ("hessian", [0.8, 0.9, 1.0])):
        for seed, value in enumerate(values):
            rows.append({"variant": variant, "seed": seed, "exact_match": value,
                         "rank_accuracy": value / 2, "best_step": 10, "steps": 20,
                         "train_seconds": 1.0,
                         "history": [{"step": 10, "test_exact_match": value - 0.1},
                                     {"step": 20, "test_exact_match": value}]})
    return rows


def test_mean_std_is_sample_statistics():
    values = [0.5, 0.6, 0.7, float("nan")]
    mean, std, count = results.mean_std(values)
    assert count == 3
    np.testing.assert_allclose(mean, np.mean(values[:3]))
    np.testing.assert_allclose(std, np.std(values[:3], ddof=1))
    assert results.mean_std([0.25]) == (0.25, 0.0, 1)
    assert math.isnan(results.mean_std([])[0])


def test_write_results_files_parse(tmp_path):
    rows = _records()
    paths = results.write_results(str(tmp_path), "grid", rows, ["exact_match", "rank_accuracy"],
                                  {"task": "sort", "steps": 20}, title="test table")
    table = results.parse_markdown_table(open(paths["markdown"], encoding="utf-8").read())
    assert [r["variant"] for r in table] == ["baseline", "hessian"]
    expected = np.array([0.8, 0.9, 1.0]) * 100
    assert table[1]["exact_match (%)"] == f"{expected.mean():.2f} ± {expected.std(ddof=1):.2f}"
    assert table[0]["seeds"] == "3"

    with open(paths["csv"], encoding="utf-8") as stream:
        csv_rows = list(csv.DictReader(stream))
    assert len(csv_rows) == 6
    assert float(csv_rows[4]["exact_match"]) == pytest.approx(0.9)

    data = json.load(open(paths["json"], encoding="utf-8"))
    assert data["config"] == {"task": "sort", "steps": 20}
    assert {"tensorflow", "keras", "numpy", "python"} <= set(data["versions"])
    assert len(data["runs"]) == 6
    summary = {s["variant"]: s for s in data["summary"]}
    assert summary["baseline"]["exact_match"][0] == pytest.approx(0.6)
    # Nothing half-written is left behind.
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_json_writes_nan_as_null(tmp_path):
    path = results.atomic_write_json(str(tmp_path / "x.json"), {"a": float("nan"),
                                                                 "b": np.float32(2.0)})
    assert json.load(open(path)) == {"a": None, "b": 2.0}


def test_parse_markdown_table_rejects_malformed():
    with pytest.raises(ValueError, match="no Markdown table"):
        results.parse_markdown_table("no table here")
    with pytest.raises(ValueError, match="number of cells"):
        results.parse_markdown_table("| a | b |\n|---|---|\n| 1 |\n")


def test_mean_curves_and_plot(tmp_path):
    rows = _records()
    curves = plots.mean_curves(rows, "test_exact_match")
    steps, mean, std = curves["hessian"]
    np.testing.assert_array_equal(steps, [10, 20])
    np.testing.assert_allclose(mean, [0.8, 0.9])
    # Sample std, as in the table (results.mean_std), not the population std.
    np.testing.assert_allclose(std, np.std([[0.7, 0.8, 0.9], [0.8, 0.9, 1.0]], axis=1, ddof=1))
    np.testing.assert_allclose(std[1], results.mean_std([0.8, 0.9, 1.0])[1])
    single = plots.mean_curves([r for r in rows if r["seed"] == 0], "test_exact_match")
    np.testing.assert_array_equal(single["hessian"][2], [0.0, 0.0])  # one seed: no band
    path = plots.plot_metric(rows, "test_exact_match", str(tmp_path / "plot.png"), title="t")
    with open(path, "rb") as stream:
        assert stream.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 1000


def _comparison_records():
    # Two methods, each with a baseline and a Newton row; values chosen so the
    # Welch p-values differ (and one comparison has a constant baseline).
    rows, values = [], {
        ("m1", "none"): [0.10, 0.12, 0.15, 0.11, 0.13],
        ("m1", "hessian"): [0.18, 0.16, 0.21, 0.17, 0.22],
        ("m2", "none"): [0.30, 0.30, 0.30],
        ("m2", "fisher"): [0.31, 0.29, 0.35],
    }
    for (method, newton), metric_values in values.items():
        for seed, value in enumerate(metric_values):
            rows.append({"variant": f"{method} · {newton}", "method": method, "newton": newton,
                         "damping": 0.01 if newton != "none" else 1.0, "seed": seed,
                         "config": {"sorter": method, "n": 10, "relaxation": "cauchy"},
                         "exact_match": value, "rank_accuracy": 1 - value})
    return rows, values


def test_welch_p_values_equal_scipy_and_reach_every_file(tmp_path):
    from scipy import stats

    rows, values = _comparison_records()
    metrics = ["exact_match", "rank_accuracy"]
    paths = results.write_results(str(tmp_path), "grid", rows, metrics, {"task": "sort"})
    expected = stats.ttest_ind(values[("m1", "hessian")], values[("m1", "none")],
                               equal_var=False).pvalue
    expected_m2 = stats.ttest_ind(values[("m2", "fisher")], values[("m2", "none")],
                                  equal_var=False).pvalue
    assert expected < 0.05 < expected_m2  # one significant row, one not

    data = json.load(open(paths["json"], encoding="utf-8"))
    summary = {s["variant"]: s for s in data["summary"]}
    newton_row = summary["m1 · hessian"]
    assert newton_row["p_value"]["exact_match"] == pytest.approx(expected, rel=1e-12)
    assert newton_row["p_value"]["rank_accuracy"] == pytest.approx(expected, rel=1e-12)
    assert summary["m2 · fisher"]["p_value"]["exact_match"] == pytest.approx(expected_m2)
    for entry in data["summary"]:
        assert {"config", "newton", "damping", "p_value"} <= set(entry)
        assert entry["config"]["sorter"] == entry["method"] and entry["config"]["n"] == 10
        if entry["newton"] == "none":
            assert entry["p_value"] is None and entry["damping"] is None
        else:
            assert entry["damping"] == 0.01
    # Markdown: the p column, bold when significant.
    table = results.parse_markdown_table(open(paths["markdown"], encoding="utf-8").read())
    by_variant = {r["variant"]: r for r in table}
    assert by_variant["m1 · hessian"]["p exact_match"] == f"**{expected:.3f}**"
    assert by_variant["m2 · fisher"]["p exact_match"] == f"{expected_m2:.3f}"
    assert by_variant["m1 · none"]["p exact_match"] == "–"
    delta = np.mean(values[("m1", "hessian")]) - np.mean(values[("m1", "none")])
    assert by_variant["m1 · hessian"]["Δ exact_match"] == f"{delta * 100:+.2f}"
    # Summary CSV.
    with open(paths["summary_csv"], encoding="utf-8") as stream:
        csv_rows = {r["variant"]: r for r in csv.DictReader(stream)}
    assert float(csv_rows["m1 · hessian"]["exact_match_p_value"]) == pytest.approx(expected)
    assert csv_rows["m1 · none"]["exact_match_p_value"] == ""


def test_welch_p_value_needs_two_values_per_side():
    assert math.isnan(results.welch_p_value([0.1], [0.2, 0.3]))
    # Both constant: scipy's t is ±inf (p = 0) for different values: no evidence.
    assert math.isnan(results.welch_p_value([0.1, 0.1], [0.2, 0.2]))
    assert math.isnan(results.welch_p_value([0.3, 0.3], [0.3, 0.3]))
    # One constant side is a valid Welch test.
    assert results.welch_p_value([0.1, 0.1], [0.2, 0.3]) > 0
    assert results.welch_p_value([0.1, 0.2, float("nan"), 0.3], [0.5, 0.6, 0.8]) == \
        pytest.approx(results.welch_p_value([0.1, 0.2, 0.3], [0.5, 0.6, 0.8]))
