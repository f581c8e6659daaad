"""``newton_target``: step (3a), the Newton target ``z*`` of a batch of outputs.

Petersen et al. (2024), eq. (3a): a damped Newton step on the loss in output
space,

.. math::

    z^\\star_i = y_i - (M + λ I)^{-1} g_i,

with ``M`` the empirical Hessian ``mean_i H_i`` (default), the empirical
Fisher ``mean_i g_i g_iᵀ``, or the sample's own Hessian ``H_i``
(element-wise). The network is then trained on ``½‖z*_i - y_i‖²`` (step
3b), whose gradient at ``y_i`` is exactly the Newton step
``(M + λI)^{-1} g_i``. How each part is computed is said by a
:class:`~keras_newton.newton.spec.NewtonStep`.

Example:

  >>> import keras, tensorflow as tf, keras_newton as kn
  >>> y_true = tf.constant([[1.0, 0.0], [0.0, 1.0]])
  >>> logits = tf.constant([[0.5, -0.5], [0.2, 0.1]])
  >>> loss = keras.losses.CategoricalCrossentropy(from_logits=True)
  >>> kn.newton_target(loss, y_true, logits, curvature="fisher").shape
  TensorShape([2, 2])
  >>> kn.newton_target(loss, y_true, logits, kn.NewtonStep("hessian", damping=0.1)).shape
  TensorShape([2, 2])
  >>> step = kn.NewtonStep("hessian", damping="adaptive")
  >>> state = step.new_state()  # kept across calls, like an optimizer's state
  >>> kn.newton_target(loss, y_true, logits, step, state=state).shape
  TensorShape([2, 2])

References:
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024, arXiv:2410.19055.
"""

import tensorflow as tf

from keras_newton._deprecation import warn_moved
from keras_newton.newton import _derivatives as derivatives
from keras_newton.newton import _estimators as estimators
from keras_newton.newton import _loss_decrease as reduction
from keras_newton.newton import _output_space as output_space
from keras_newton.newton import adaptive_damping, solvers
from keras_newton.newton.adaptive_damping import AdaptiveDamping
from keras_newton.newton._curvature_scale import curvature_scale
from keras_newton.newton.spec import (
    DEFAULT_CURVATURE, DEFAULT_DAMPING, NewtonState, as_newton_step)


def newton_target(loss, y_true, y_pred, step=None, *, curvature=DEFAULT_CURVATURE,
                  damping=DEFAULT_DAMPING, state=None) -> tf.Tensor:
    """Computes the Newton target ``z* = y - (M + λI)^{-1} g`` of a batch.

    Args:
      loss: a ``keras.losses.Loss``, a loss name, or a callable
        ``(y_true, y_pred) -> [N, ...]`` per-sample values. A loss with a
        ``per_sample_derivatives`` method supplies its own derivatives.
      y_true: targets, in whatever form ``loss`` expects.
      y_pred: outputs ``[N, ...]`` (floating); trailing axes are flattened to
        ``m`` entries per sample.
      step: a :class:`~keras_newton.newton.spec.NewtonStep` (or a curvature
        name); default ``NewtonStep()``: empirical Hessian, ``λ = 1e-3``.
      curvature, damping: shortcuts for ``NewtonStep(curvature, damping)``.
      state: the :class:`~keras_newton.newton.spec.NewtonState` of
        ``step.new_state()``, kept by the caller across calls (as
        :class:`keras_newton.NewtonLoss` does). Needed when the Hessian
        estimate is refreshed every ``k > 1`` calls. With an adaptive
        damping rule this call uses the state's ratio and, unless
        ``state.damping_state.adapting`` is off (evaluation), sets the next
        one; without a state an adaptive rule uses its initial ratio and
        adapts nothing.

    Returns:
      ``z*`` with the shape and dtype of ``y_pred``, gradient stopped. Samples
      whose gradient (or per-sample Hessian, where one is formed) is not
      finite get ``z* = y`` (no step) and are left out of the batch
      curvature, so the other samples keep their Newton steps. If the batch
      curvature is still not finite (a sample with a finite gradient but a
      non-finite Hessian on the autodiff empirical-Hessian path, or a
      sketch) the step falls back to the plain gradient step ``z* = y - g``
      (Theorem 2 of the paper: ordinary training).

    Raises:
      ValueError: for an invalid spec or one the loss cannot follow, a spec
        that needs a state called without one, outputs without a batch and
        an output axis, or ``y_true`` and ``y_pred`` whose shapes the loss
        does not accept (the message names both shapes).
      TypeError: for a non-numeric damping, integer outputs, or a ``state``
        that is not a :class:`~keras_newton.newton.spec.NewtonState`.
    """
    return _newton_target(loss, y_true, y_pred, as_newton_step(step, curvature, damping), state)


def _newton_target(loss, y_true, y_pred, step, state=None, keep=None) -> tf.Tensor:
    """Eq. (3a) as ``step`` (a ``NewtonStep``) says; see :func:`newton_target`.

    ``keep``: optional ``[N]`` booleans; a sample with ``False`` is left out
    as one with a non-finite gradient is (not in the curvature, no step);
    :class:`keras_newton.NewtonLossModel` passes the samples it excludes
    (non-finite inputs, invalid sample weights). Estimated Hessians
    (``HessianEstimate``) do not see it.
    """
    if state is not None and not isinstance(state, NewtonState):
        raise TypeError(f"state must be the NewtonState of step.new_state(), got {state!r}.")
    cache = None if state is None else state.hessian_cache
    damping_state = None if state is None else state.damping_state
    loss = derivatives.resolve_loss(loss)
    step.check_loss(loss)
    if step.estimate.refresh_every > 1 and cache is None:
        raise ValueError("HessianEstimate.refresh_every > 1 needs the state of "
                         "step.new_state(), kept across calls (NewtonLoss does).")
    batch = output_space.prepare_batch(y_true, y_pred)
    method = step.solver.choose(step.curvature, step.damping.positive, batch.m, batch.size,
                                derivatives.uses_protocol(loss, step.derivatives))
    # g_i for every sample, and H_i where M is formed from per-sample Hessians.
    batch_derivatives = derivatives.batch_derivatives(
        loss, batch.y_true, batch.outputs,
        estimators.derivatives_needed(step.curvature, step.estimate, method),
        step.derivatives, keep)
    # M: the curvature of the global batch (all-reduced across replicas).
    curvature_estimate = estimators.estimate_curvature(
        step.curvature, step.estimate, method, loss, step.derivatives,
        batch.y_true, batch.outputs, batch_derivatives, cache)
    damping, radius, bound = _damping(step.damping, damping_state, curvature_estimate,
                                      batch_derivatives)
    # (M + λI)^{-1} g_i, the damped Newton step.
    newton_steps = solvers.damped_newton_steps(
        curvature_estimate, batch_derivatives.gradients, damping, step.solver)
    shrink = None
    if radius is not None:
        # Trust region: no step longer than Δ (the λ floor already ensures it
        # for M̃ ⪰ 0; this also bounds CG stopped at negative curvature).
        newton_steps, shrink = adaptive_damping.clip_to_radius(newton_steps, radius)
    # z*_i = y_i - (M + λI)^{-1} g_i
    stepped = output_space.stepped_samples(newton_steps, batch_derivatives.usable)
    moved = output_space.moved_outputs(batch, newton_steps, stepped)
    if damping_state is not None and damping_state.adapting:
        # Levenberg-Marquardt: ρ of this step sets the next step's λ.
        predicted = reduction.predicted_reduction(
            batch_derivatives.gradients, newton_steps, damping, stepped, shrink)
        predicted = tf.where(getattr(curvature_estimate, "ok", True), predicted, float("nan"))
        actual = reduction.actual_reduction(loss, batch.y_true, batch.outputs, moved, stepped)
        damping_state.update(damping, actual, predicted, bound)
    return tf.stop_gradient(output_space.cast_within_range(moved, batch.dtype))


def newton_step_target(loss, y_true, y_pred, step, cache=None, damping_state=None) -> tf.Tensor:
    """Deprecated: ``newton_target(loss, y_true, y_pred, step, state=...)``.

    The second entry point of earlier versions, with the Hessian cache and
    the damping state as two arguments; they are one
    :class:`~keras_newton.newton.spec.NewtonState` now
    (``step.new_state()``). Computes exactly what :func:`newton_target` does.
    """
    warn_moved("keras_newton.newton.newton_step_target",
               "keras_newton.newton_target(loss, y_true, y_pred, step, state=step.new_state())")
    state = None
    if cache is not None or damping_state is not None:
        state = NewtonState(cache, damping_state)
    return newton_target(loss, y_true, y_pred, as_newton_step(step), state=state)


def _damping(rule, state, curvature_estimate, batch_derivatives):
    """This step's ``(λ, Δ, bound)``: a fixed rule's ``(value, None, False)``, or
    ``λ = max(r·κ, G/Δ)`` of an adaptive one (its trust radius ``Δ`` and
    whether ``G/Δ`` set ``λ``; see
    :func:`~keras_newton.newton.adaptive_damping.trust_region_damping`)."""
    if not isinstance(rule, AdaptiveDamping):
        return rule.value(), None, False
    scale = curvature_scale(curvature_estimate, batch_derivatives.gradients,
                            batch_derivatives.usable)
    ratio, radius = (rule.initial, rule.radius) if state is None else (state.ratio, state.radius)
    damping, bound = adaptive_damping.trust_region_damping(
        ratio, radius, scale, batch_derivatives.gradients, batch_derivatives.usable)
    return damping, tf.cast(radius, damping.dtype), bound
