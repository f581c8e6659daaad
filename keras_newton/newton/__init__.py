"""The Newton core: step (3a) of Petersen et al. (NeurIPS 2024), said once.

A :class:`NewtonStep` specifies how the Newton target

.. math::

    z^\\star_i = y_i - (M + λ I)^{-1} g_i

is computed; :func:`newton_target` computes it, :class:`NewtonLoss` and
:class:`NewtonLossModel` train on it.

This file is the one list of the public names. The public modules, one per
concept:

=====================  ===================================================
``spec``               :class:`NewtonStep`, the specification, and its
                       :class:`NewtonState` (``step.new_state()``)
``curvatures``         the curvature names (Hessian, Fisher, element-wise)
``hessian_estimate``   :class:`HessianEstimate` (exact, subsampled,
                       sketched, refreshed)
``damping``            damping rules for ``λ`` (:class:`FixedDamping`)
``adaptive_damping``   :class:`AdaptiveDamping`, Levenberg-Marquardt ``λ``
``solvers``            :class:`Solver` and the damped solve
``target``             :func:`newton_target`, eq. (3a)
``newton_loss``        :class:`NewtonLoss` (step 3b as a Keras loss)
``newton_loss_model``  :class:`NewtonLossModel` (3a + 3b as ``train_step``)
=====================  ===================================================

Modules with a leading underscore are the plumbing (not API):
``_derivatives`` (where ``g_i``, ``H_i`` come from: ``_protocol``,
``_closed_forms``, ``_autodiff``; ``_usable_samples``), ``_estimators`` (the
curvature of a batch in solvable form; ``_sketch``, ``_curvature_cache``),
``_curvature_scale`` and ``_loss_decrease`` (the ``κ`` and the predicted and
actual loss decreases of :class:`AdaptiveDamping`), ``_eigen_solve``,
``_woodbury``, ``_conjugate_gradient`` (the solves), ``_distribution``
(global-batch statistics under ``tf.distribute``), ``_output_space`` (the
batch as flat outputs, and ``z*``), ``_finite_inputs``, ``_configurable``
(value semantics of spec parts) and ``_legacy_options`` (the flat keyword
options of earlier versions, read when old configs load).
"""

from keras_newton._deprecation import moved_names
from keras_newton.newton.adaptive_damping import AdaptiveDamping, DampingState
from keras_newton.newton._curvature_cache import CurvatureCache
from keras_newton.newton.curvatures import CURVATURES
from keras_newton.newton.damping import FixedDamping
from keras_newton.newton._derivatives import DERIVATIVE_SOURCES
from keras_newton.newton.hessian_estimate import HessianEstimate
from keras_newton.newton.newton_loss import NewtonLoss
from keras_newton.newton.newton_loss_model import NewtonLossModel
from keras_newton.newton.solvers import SOLVERS, Solver
from keras_newton.newton.spec import NewtonState, NewtonStep
from keras_newton.newton.target import newton_target
# Deprecated (warns when called): newton_target(..., state=step.new_state()).
from keras_newton.newton.target import newton_step_target  # noqa: F401

__all__ = [
    "AdaptiveDamping",
    "CURVATURES",
    "CurvatureCache",
    "DERIVATIVE_SOURCES",
    "DampingState",
    "FixedDamping",
    "HessianEstimate",
    "NewtonLoss",
    "NewtonLossModel",
    "NewtonState",
    "NewtonStep",
    "SOLVERS",
    "Solver",
    "newton_target",
]

# Helpers exported by earlier versions; private now (warning aliases).
__getattr__ = moved_names(__name__, {
    "per_sample_loss_fn": ("keras_newton.newton._autodiff", "per_sample_loss_fn"),
    "resolve_loss": ("keras_newton.newton._derivatives", "resolve_loss"),
    "shape_errors_named": ("keras_newton.newton._protocol", "shape_errors_named"),
})
