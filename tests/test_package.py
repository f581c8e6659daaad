"""The package imports cleanly, registers its Keras objects, and defers data work."""

import subprocess
import sys

import keras

import keras_newton as kn


def test_import_does_no_dataset_work():
    # A fresh interpreter: other tests may already have imported TFDS here.
    code = ("import sys, keras_newton; "
            "print('tensorflow_datasets' in sys.modules, 'keras_newton.datasets' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert output[-2:] == ["False", "False"]


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
