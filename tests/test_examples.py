"""Smoke tests of the runnable scripts in examples/ (tiny settings, seconds)."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_classification_demo_reports_regular_and_newton_variants():
    command = [
        sys.executable, os.path.join(ROOT, "examples", "classification_demo.py"),
        "--epochs", "1", "--seeds", "1", "--train-size", "128", "--no-jit-compile",
    ]
    # The script must find the package of this checkout, installed or not.
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    for variant in ("regular", "Newton (hessian)", "Newton (fisher)"):
        row = re.search(
            rf"^\| {re.escape(variant)} \| ([\d.]+) ± [\d.]+ \| ([\d.]+) ± [\d.]+ \|",
            result.stdout, re.MULTILINE,
        )
        assert row, f"no result row for {variant}:\n{result.stdout}"
        accuracy, cross_entropy = float(row.group(1)), float(row.group(2))
        assert 0.0 <= accuracy <= 1.0 and cross_entropy > 0.0


def _run_example(name, *args):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                            capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _rows(stdout, first_column):
    return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in re.finditer(
        rf"^\| ({re.escape(first_column)}[^|]*?) \| ([\d.]+) \| ([\d.]+) \|$", stdout,
        re.MULTILINE)}


def test_sorting_example_trains_with_and_without_the_newton_loss():
    stdout = _run_example("sorting_with_newton_loss.py", "--train-sets", "200",
                          "--test-sets", "50", "--epochs", "1")
    rows = _rows(stdout, "NeuralSort")
    assert set(rows) == {"NeuralSort", "NeuralSort + Newton loss (Hessian)"}, stdout
    for exact_match, rank_accuracy in rows.values():
        assert 0.0 <= exact_match <= 100.0 and 0.0 <= rank_accuracy <= 100.0
        assert exact_match <= rank_accuracy  # a set in exact order has every rank right


def test_shortest_path_example_trains_with_and_without_the_newton_loss():
    stdout = _run_example("shortest_path_with_newton_loss.py", "--train-maps", "32",
                          "--test-maps", "16", "--epochs", "1")
    rows = _rows(stdout, "relaxed shortest path")
    assert set(rows) == {"relaxed shortest path",
                         "relaxed shortest path + Newton loss (Hessian)"}, stdout
    for perfect_match, cost_ratio in rows.values():
        assert 0.0 <= perfect_match <= 100.0
        assert cost_ratio >= 1.0 - 1e-6  # no path is cheaper than the shortest
