"""Smoke test: the shortest-path benchmark script runs end to end at tiny sizes."""

import importlib.util
import math
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "examples" / "benchmark_shortest_path.py"


def test_benchmark_runs_with_tiny_sizes(capsys):
    spec = importlib.util.spec_from_file_location("benchmark_shortest_path", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--batch", "3", "--grid", "3", "--image", "12", "--samples", "2",
                           "--rounds", "2", "--train-rounds", "2", "--no-unroll"])
    printed = capsys.readouterr().out
    assert "training-step ratio Newton/regular (Fisher)" in printed
    assert set(results["algorithms"]) == {
        "relaxed path fwd+bwd", "relaxed path fwd+bwd (while loops)", "exact solver",
        "smoothing gradient, 2 samples",
        "smoothing gradient+Hessian, 2 samples", "Fenchel-Young gradient+Hessian, 2 samples"}
    assert all(t > 0 and math.isfinite(t) for t in results["algorithms"].values())
    assert math.isfinite(results["ratio"]) and results["ratio"] > 0
