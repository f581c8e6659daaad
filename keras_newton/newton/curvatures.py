"""The three curvatures ``M`` of a Newton step in output space.

Petersen et al. (2024), Section 3: with per-sample gradients ``g_i`` and
Hessians ``H_i`` of the loss with respect to the outputs ``y_i``,

.. math::

    \\bar H = \\frac1N \\sum_i H_i \\;(\\text{"hessian"}), \\qquad
    \\bar F = \\frac1N \\sum_i g_i g_i^\\top \\;(\\text{"fisher"}), \\qquad
    M_i = H_i \\;(\\text{"elementwise_hessian"}).

Example:

>>> validate_curvature("fisher")
'fisher'
"""

from keras_newton._validation import one_of

HESSIAN = "hessian"
FISHER = "fisher"
ELEMENTWISE_HESSIAN = "elementwise_hessian"
CURVATURES = (HESSIAN, FISHER, ELEMENTWISE_HESSIAN)


def validate_curvature(curvature: str) -> str:
    """Returns ``curvature`` if it names a supported curvature, else raises."""
    return one_of(curvature, CURVATURES, "curvature")
