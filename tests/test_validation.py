"""One set of argument checks, one wording, wherever an argument is passed."""

import numpy as np
import pytest

import keras_newton as kn
from keras_newton._validation import finite_number, int_at_least, one_of


def test_one_of():
    assert one_of("b", ("a", "b"), "letter") == "b"
    with pytest.raises(ValueError, match=r"^Unknown letter='c'; expected one of \('a', 'b'\)\.$"):
        one_of("c", ["a", "b"], "letter")


@pytest.mark.parametrize("value, inclusive, ok", [
    (0.5, False, True), (np.float32(0.5), False, True), (0, False, False), (0, True, True),
    (-1e-9, True, False), (float("inf"), False, False), (float("nan"), True, False)])
def test_finite_number(value, inclusive, ok):
    if ok:
        assert finite_number(value, "x", inclusive=inclusive) == float(value)
        assert type(finite_number(value, "x", inclusive=inclusive)) is float
    else:
        bound = ">=" if inclusive else ">"
        with pytest.raises(ValueError, match=f"^x must be finite and {bound} 0, got "):
            finite_number(value, "x", inclusive=inclusive)


@pytest.mark.parametrize("value", [True, "1", None, [1.0]])
def test_finite_number_refuses_non_numbers_with_a_type_error(value):
    with pytest.raises(TypeError, match="^x must be a number, got "):
        finite_number(value, "x")


def test_int_at_least():
    assert int_at_least(3, "n") == 3
    assert int_at_least(0, "seed", minimum=0) == 0
    assert int_at_least(None, "n", allow_none=True) is None
    for bad in (0, 1.0, True, None, "2"):
        with pytest.raises(ValueError, match="^n must be an int >= 1, got "):
            int_at_least(bad, "n")
    with pytest.raises(ValueError, match="^seed must be None or an int >= 0, got -1"):
        int_at_least(-1, "seed", minimum=0, allow_none=True)


def test_the_package_speaks_with_one_wording():
    # The same kind of mistake gets the same sentence in every subpackage.
    with pytest.raises(ValueError, match="^Unknown curvature='x'; expected one of"):
        kn.NewtonStep("x")
    with pytest.raises(ValueError, match="^Unknown noise='x'; expected one of"):
        kn.losses.SmoothedLoss("mse", noise="x")
    with pytest.raises(ValueError, match="^Unknown loop='x'; expected one of"):
        kn.losses.ShortestPathLoss(loop="x")
    with pytest.raises(ValueError, match="^HessianEstimate.rank must be None or an int >= 1"):
        kn.newton.HessianEstimate(rank=0)
    with pytest.raises(ValueError, match="^HessianEstimate.refresh_every must be an int >= 1"):
        kn.newton.HessianEstimate(refresh_every=0)
    with pytest.raises(ValueError, match="^num_samples must be an int >= 1"):
        kn.losses.SmoothedLoss("mse", num_samples=0)
    with pytest.raises(ValueError, match="^seed must be None or an int >= 0"):
        kn.losses.SmoothedLoss("mse", seed=-1)
    for bad, error in ((-1.0, ValueError), ("x", TypeError)):
        with pytest.raises(error, match="^sigma must be"):
            kn.losses.SmoothedLoss("mse", sigma=bad)
    with pytest.raises(ValueError, match="^damping must be finite and >= 0"):
        kn.newton.FixedDamping(-1.0)
