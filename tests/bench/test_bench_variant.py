"""A benchmark variant carries the library's spec parts, and builds the step the flat options did."""

import warnings

import pytest

from keras_newton.bench import task as task_lib
from keras_newton.bench.task import Variant
from keras_newton.newton import HessianEstimate, NewtonStep

CASES = [
    ("hessian", 0.1, {}),
    ("fisher", 1.0, {}),
    ("elementwise_hessian", 0.01, {}),
    ("hessian", "adaptive", {}),
    ("hessian", 0.5, {"hessian_samples": 2, "hessian_refresh_every": 3}),
    ("hessian", 0.0, {"hessian_rank": 4, "hessian_products": "finite_differences"}),
]


@pytest.mark.parametrize("newton, damping, options", CASES)
def test_a_variant_builds_the_step_of_the_flat_options(newton, damping, options):
    variant = Variant.from_flags("v", newton, damping, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = NewtonStep.from_options(curvature=newton, damping=damping, **options)
    assert variant.newton_step() == legacy
    assert isinstance(variant.estimate, HessianEstimate)


def test_records_keep_their_keys_and_values():
    variant = Variant.from_flags("v", "hessian", 0.1, options=(("sorter", "soft_sort"),),
                                 hessian_samples=2, hessian_refresh_every=3)
    assert variant.as_dict() == {
        "name": "v", "newton": "hessian", "damping": 0.1, "hessian_samples": 2,
        "hessian_rank": None, "hessian_refresh_every": 3, "hessian_products": "autodiff",
        "sorter": "soft_sort"}
    assert Variant("baseline").hessian_options() == {
        "hessian_samples": None, "hessian_rank": None, "hessian_refresh_every": 1,
        "hessian_products": "autodiff"}


def test_parsing_uses_the_library_validators_and_names_the_flags():
    assert task_lib.NEWTON_CHOICES == ("none", "hessian", "fisher", "elementwise_hessian")
    assert task_lib.parse_damping("1e-3") == 1e-3
    assert task_lib.parse_damping("adaptive") == "adaptive"
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(ValueError, match="damping must be finite and >= 0"):
            task_lib.parse_damping(bad)
    for bad in ("lots", None, [1.0]):
        with pytest.raises(ValueError, match="damping must be a number >= 0 or 'adaptive'"):
            task_lib.parse_damping(bad)
    with pytest.raises(ValueError, match="hessian_rank must be None or an int >= 1"):
        task_lib.hessian_estimate(hessian_rank=0)
    with pytest.raises(ValueError, match="set hessian_rank"):
        task_lib.hessian_estimate(hessian_products="finite_differences")
    with pytest.raises(TypeError, match="hessian_ranks"):
        task_lib.hessian_estimate(hessian_ranks=2)
    with pytest.raises(ValueError, match="apply to newton='hessian'"):
        Variant.from_flags("v", "none", hessian_samples=2)
