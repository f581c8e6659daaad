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
