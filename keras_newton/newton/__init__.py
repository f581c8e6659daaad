"""The Newton core: step (3a) of Petersen et al. (NeurIPS 2024), said once.

A :class:`NewtonStep` specifies how the Newton target

.. math::

    z^\\star_i = y_i - (M + λ I)^{-1} g_i

is computed; :func:`newton_target` computes it, :class:`NewtonLoss` and
:class:`NewtonLossModel` train on it. One module per concept:

=====================  ===================================================
``spec``               :class:`NewtonStep`, the specification
``curvatures``         the curvature names (Hessian, Fisher, element-wise)
``derivatives``        where ``g_i``, ``H_i`` come from (protocol, closed
                       form, autodiff); ``protocol``, ``closed_forms``,
                       ``autodiff`` implement them
``usable_samples``     non-finite samples left out of the curvature
``hessian_estimate``   :class:`HessianEstimate` (exact, subsampled,
                       sketched, refreshed)
``estimators``         the curvature ``M`` of a batch in solvable form;
                       ``sketch``, ``curvature_cache`` serve it
``damping``            damping rules for ``λ`` (:class:`FixedDamping`)
``adaptive_damping``   :class:`AdaptiveDamping`, Levenberg-Marquardt ``λ``;
                       ``curvature_scale`` (its ``κ``), ``reduction``
                       (its predicted and actual reductions)
``solvers``            :class:`Solver` and the damped solve;
                       ``eigen_solve``, ``woodbury``, ``conjugate_gradient``
``distribution``       global-batch statistics under ``tf.distribute``
``output_space``       the batch as flat outputs, and ``z*``
``target``             :func:`newton_target`, eq. (3a)
``newton_loss``        :class:`NewtonLoss` (step 3b as a Keras loss)
``newton_loss_model``  :class:`NewtonLossModel` (3a + 3b as ``train_step``)
``options``            the flat keyword options of earlier versions
``configurable``       value semantics (config, equality) of spec parts
=====================  ===================================================
"""

from keras_newton.newton.adaptive_damping import AdaptiveDamping, DampingState
from keras_newton.newton._curvature_cache import CurvatureCache
from keras_newton.newton._autodiff import per_sample_loss_fn
from keras_newton.newton.curvatures import CURVATURES
from keras_newton.newton.damping import FixedDamping
from keras_newton.newton._derivatives import DERIVATIVE_SOURCES, resolve_loss
from keras_newton.newton.hessian_estimate import HessianEstimate
from keras_newton.newton.newton_loss import NewtonLoss
from keras_newton.newton.newton_loss_model import NewtonLossModel
from keras_newton.newton._protocol import shape_errors_named
from keras_newton.newton.solvers import SOLVERS, Solver
from keras_newton.newton.spec import NewtonStep
from keras_newton.newton.target import newton_step_target, newton_target

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
    "NewtonStep",
    "SOLVERS",
    "Solver",
    "newton_step_target",
    "newton_target",
    "per_sample_loss_fn",
    "resolve_loss",
    "shape_errors_named",
]
