"""Smoke test of examples/benchmark_sorting_overhead.py at tiny sizes."""

import importlib.util
import pathlib

import numpy as np

SCRIPT = pathlib.Path(__file__).parents[2] / "examples" / "benchmark_sorting_overhead.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("benchmark_sorting_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_prints_table_with_finite_positive_ratios(capsys):
    benchmark = _load_script()
    result = benchmark.main(
        batch_size=2, set_size=3, image_shape=(8, 16, 1), rounds=2, warmup=0,
        sort_sizes=(3,), sort_batch_size=4,
    )
    for name in ("hessian", "fisher"):
        ratio = result["ratios"][name]
        assert np.isfinite(ratio) and ratio > 0
        np.testing.assert_allclose(ratio, result["step"][name] / result["step"]["regular"])
        assert result["target"][name] > 0
        # Paired ratio: the median over rounds of Newton / regular step time.
        paired = np.median(np.asarray(result["step_times"][name])
                           / np.asarray(result["step_times"]["regular"]))
        np.testing.assert_allclose(result["paired_ratios"][name], paired)
        assert len(result["step_times"][name]) == 2
    assert set(result["diff_sort"]) == {3} and result["diff_sort"][3] > 0
    printed = capsys.readouterr().out
    assert "hessian" in printed and "fisher" in printed and "diff_sort" in printed
    assert f"{result['ratios']['hessian']:.3f}" in printed
