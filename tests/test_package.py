"""The package imports cleanly, registers its Keras objects, and defers data work."""

import importlib
import subprocess
import sys

import keras
import pytest

import keras_newton as kn


BENCH_ONLY = ("scipy", "sklearn", "matplotlib")  # the `bench` extra


def test_import_does_no_dataset_work_and_needs_no_benchmark_dependency():
    # A fresh interpreter (other tests may already have imported TFDS here) in
    # which scipy, scikit-learn and matplotlib cannot be imported: the library
    # imports and computes a Newton target without them, and loads no data.
    code = (
        "import sys\n"
        f"for name in {BENCH_ONLY!r}:\n"
        "    sys.modules[name] = None  # `import name` raises ImportError\n"
        "import keras_newton as kn, tensorflow as tf\n"
        "z = kn.newton_target('mse', tf.zeros([2, 3]), tf.ones([2, 3]))\n"
        "print(z.shape, [m for m in sys.modules if m.split('.')[0] in "
        f"{BENCH_ONLY!r} and sys.modules[m] is not None])\n"
        "print('tensorflow_datasets' in sys.modules, 'keras_newton.datasets' in sys.modules)\n")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip().split("\n")
    assert output[-2] == "(2, 3) []"
    assert output[-1].split() == ["False", "False"]


def test_the_dependency_block_of_the_subprocess_works():
    for name in BENCH_ONLY:
        saved = sys.modules.get(name)
        sys.modules[name] = None
        try:
            with pytest.raises(ImportError):
                importlib.import_module(name)
        finally:
            if saved is None:
                del sys.modules[name]
            else:
                sys.modules[name] = saved


def test_lazy_submodules_load_on_access():
    assert kn.models.__name__ == "keras_newton.models"
    assert kn.datasets.__name__ == "keras_newton.datasets"


def test_unknown_attribute_raises_attribute_error():
    try:
        kn.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_losses_and_metrics_are_registered_for_loading():
    names = ["NewtonLoss", "NewtonLossModel", "NewtonStep", "HessianEstimate", "Solver",
             "FixedDamping", "SortingLoss", "ShortestPathLoss", "SmoothedLoss", "FenchelYoungLoss",
             "OrderingExactMatch", "ElementwiseRankAccuracy", "PerfectMatch", "CostRatio"]
    for name in names:
        registered = keras.saving.get_registered_object(f"keras_newton>{name}")
        assert registered is not None, name
