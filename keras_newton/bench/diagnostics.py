"""Why a Newton loss helps (or not): curvature diagnostics of ranking losses.

Petersen et al. (2024) attribute the gains of Newton losses on relaxed
sorting to badly scaled gradients: as a network's scores spread apart, the
relaxations saturate, and per-set gradients vanish for some sets while they
stay large for others. This module measures, on a fixed batch of sets and
the current network, what the Newton step does to that. With per-set
gradients ``g_i = ∇_{y_i} ℓ_i`` and Hessians ``H_i``:

* ``grad_norm_spread``: ``max_i ‖g_i‖ / median_i ‖g_i‖`` (large: a few sets
  dominate the batch gradient); ``grad_norm_median`` its denominator;
* ``score_std``: the mean over sets of the standard deviation of the scores
  within a set (how far apart the network places the items);
* ``curvature_eig_min`` / ``curvature_eig_max``: the extreme eigenvalues of
  the damped curvature ``M + λI`` of the variant (batch-mean Hessian, batch
  Fisher, or over all sets for the element-wise Hessian) on the directions
  that change the order. A ranking loss is constant along the all-ones
  vector (shifting every score changes nothing), which gives the trivial
  eigenvalue ``λ``; the diagnostics use the ``n - 1`` dimensional
  complement ``Qᵀ M Q`` with ``Q`` an orthonormal basis of ``1^⊥``;
* ``newton_cosine``: cosine between the Newton step ``d = y - z*`` and the
  gradient over the whole batch (flattened): 1 means the Newton step is the
  gradient times a scalar, which Adam's normalization undoes;
* ``step_scale``: ``‖d‖ / ‖g‖``, the effective per-batch step scale;
* ``damping``: the ``λ`` of the step (for adaptive damping, the larger of
  the model's current ratio times this batch's curvature scale ``κ``, see
  :mod:`keras_newton.newton._curvature_scale`, and the largest gradient norm
  over the trust radius).

The last five are ``NaN`` for the baseline (no curvature is used).

.. math::

    d_i = (M + \\lambda I)^{-1} g_i, \\qquad
    \\cos = \\frac{\\sum_i d_i^\\top g_i}{\\lVert d \\rVert\\,\\lVert g \\rVert}.

Example:
  >>> monitor = make_monitor(task, Variant("h", newton="hessian", damping=0.01))
  >>> monitor(model)["newton_cosine"]                      # doctest: +SKIP
  0.97

References:
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024, §3 and §5.
"""

from __future__ import annotations

import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_newton.bench.task import Task, Variant

DIAGNOSTICS = ("grad_norm_spread", "grad_norm_median", "score_std", "curvature_eig_min",
               "curvature_eig_max", "newton_cosine", "step_scale", "damping")
DIAGNOSTIC_SETS = 100  # Sets of the validation split the diagnostics look at.
# Variants whose diagnostics need per-set Hessians (the others use gradients only).
HESSIAN_VARIANTS = ("hessian", "elementwise_hessian")


def per_set_derivatives(loss: keras.losses.Loss, y_true: tf.Tensor, y_pred: tf.Tensor,
                        hessians: bool = True) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Per-set gradients ``[B, n]`` and Hessians ``[B, n, n]`` of ``loss.call``.

    Sets are independent (``loss.call`` returns one value per set), so the
    gradient of the sum holds every set's own gradient. With
    ``hessians=False`` the second value is ``None``: the baseline and the
    Fisher need only gradients, and the Hessian's ``batch_jacobian`` is
    slow to trace through a sorting network (tens of seconds).
    """
    with tf.GradientTape() as outer:
        outer.watch(y_pred)
        with tf.GradientTape() as inner:
            inner.watch(y_pred)
            total = tf.reduce_sum(loss.call(y_true, y_pred))
        gradients = inner.gradient(total, y_pred)
    return gradients, (outer.batch_jacobian(gradients, y_pred) if hessians else None)


def order_basis(n: int) -> np.ndarray:
    """``[n, n - 1]`` orthonormal basis of the vectors orthogonal to all-ones."""
    ones = np.ones((n, 1)) / math.sqrt(n)
    # QR of [1, I] gives 1/√n first; the remaining columns span 1^⊥.
    q, _ = np.linalg.qr(np.concatenate([ones, np.eye(n)], axis=1))
    return q[:, 1:n]


def sorting_diagnostics(loss: keras.losses.Loss, y_true, y_pred, newton: str,
                        damping: float, derivatives: Callable | None = None,
                        damping_ratio: float | None = None,
                        target: Callable | None = None,
                        damping_radius: float | None = None) -> dict[str, float]:
    """The diagnostics of the module docstring for one batch of sets.

    Args:
      loss: a per-set ranking loss (e.g. :class:`keras_newton.losses.SortingLoss`).
      y_true: ``[B, n]`` true values.
      y_pred: ``[B, n]`` scores.
      newton: ``"none"``, ``"hessian"``, ``"fisher"`` or ``"elementwise_hessian"``.
      damping: Tikhonov λ of the Newton variant.
      derivatives: ``(y_true, y_pred) -> (gradients, hessians)``, by default
        :func:`per_set_derivatives` of ``loss``.
      damping_ratio: for adaptive damping, ``λ / κ`` (then ``damping`` is
        ignored and ``λ = max(r·κ, max_i ‖g_i‖ / Δ)`` with ``κ`` the batch
        curvature's root-mean-square eigenvalue and ``Δ`` ``damping_radius``).
      damping_radius: the adaptive damping's trust radius ``Δ``.
      target: ``(y_true, y_pred, damping) -> z*``, by default
        :func:`keras_newton.newton_target` of ``loss`` with curvature ``newton``.

    Returns:
      ``{name: float}`` for every name in :data:`DIAGNOSTICS`.
    """
    from keras_newton import newton_target

    y_true = tf.convert_to_tensor(y_true, tf.float32)
    y_pred = tf.convert_to_tensor(y_pred, tf.float32)
    if derivatives is None:
        gradients, hessians = per_set_derivatives(
            loss, y_true, y_pred, hessians=newton in HESSIAN_VARIANTS)
    else:
        gradients, hessians = derivatives(y_true, y_pred)
    g = gradients.numpy().astype(np.float64)
    norms = np.linalg.norm(g, axis=1)
    median = float(np.median(norms))
    out = {"grad_norm_spread": float(norms.max() / median) if median > 0 else math.nan,
           "grad_norm_median": median,
           "score_std": float(np.mean(np.std(y_pred.numpy(), axis=1))),
           "curvature_eig_min": math.nan, "curvature_eig_max": math.nan,
           "newton_cosine": math.nan, "step_scale": math.nan, "damping": math.nan}
    if newton == "none":
        return out
    basis = order_basis(g.shape[1])
    if newton == "fisher":
        matrices = np.einsum("bi,bj->ij", g, g)[None] / g.shape[0]
    else:
        h = hessians.numpy().astype(np.float64)
        matrices = h.mean(axis=0)[None] if newton == "hessian" else h
    if damping_ratio is not None:
        # κ as the Newton step computes it: ‖M‖_F / √m (mean over sets, element-wise).
        scale = float(np.sqrt(np.mean(np.sum(matrices ** 2, axis=(1, 2)) / g.shape[1])))
        scale = scale if np.isfinite(scale) else 0.0
        floor = float(norms.max()) / damping_radius if damping_radius else 0.0
        damping = max(damping_ratio * scale, floor)
        damping = damping if np.isfinite(damping) and damping > 0 else damping_ratio
    out["damping"] = float(damping)
    projected = np.einsum("ia,bij,jc->bac", basis, matrices, basis)
    eigenvalues = np.linalg.eigvalsh(0.5 * (projected + np.swapaxes(projected, 1, 2)))
    out["curvature_eig_min"] = float(eigenvalues.min() + damping)
    out["curvature_eig_max"] = float(eigenvalues.max() + damping)
    if target is None:
        def target(t, s, d):
            return newton_target(loss, t, s, curvature=newton, damping=d)
    step = (y_pred - target(y_true, y_pred, float(damping))).numpy().astype(np.float64)
    step_norm, gradient_norm = np.linalg.norm(step), np.linalg.norm(g)
    if step_norm > 0 and gradient_norm > 0:
        out["newton_cosine"] = float(np.sum(step * g) / (step_norm * gradient_norm))
        out["step_scale"] = float(step_norm / gradient_norm)
    return out


def make_monitor(task: Task, variant: Variant,
                 num_sets: int = DIAGNOSTIC_SETS) -> Callable[[keras.Model], dict]:
    """``model -> diagnostics`` on the first ``num_sets`` validation sets of ``task``."""
    x, y = task.eval_sets["validation"]
    x, y = x[:num_sets], y[:num_sets]
    # Traced once per monitor (a grid keeps one per compiled model): eager
    # batch_jacobian, and the Newton target's Jacobians, re-trace their pfor
    # at every call. A new damping (adaptive) re-traces the target.
    hessians = variant.newton in HESSIAN_VARIANTS
    derivatives = tf.function(lambda t, s: per_set_derivatives(task.loss, t, s, hessians))
    target = None
    if variant.is_newton:
        from keras_newton import newton_target

        target = tf.function(lambda t, s, damping: newton_target(
            task.loss, t, s, curvature=variant.newton, damping=damping))

    def monitor(model: keras.Model) -> dict[str, float]:
        scores = model.predict(x, batch_size=task.eval_batch_size, verbose=0)
        states = [w.damping_state for w in getattr(model, "_newton_wrappers", {}).values()
                  if w.damping_state is not None]
        ratio = float(states[0].ratio.numpy()) if states else None
        radius = float(states[0].radius.numpy()) if states else None
        return sorting_diagnostics(task.loss, y, scores, variant.newton,
                                   0.0 if ratio is not None else variant.damping,
                                   derivatives=derivatives, damping_ratio=ratio,
                                   damping_radius=radius,
                                   target=target)

    return monitor


__all__ = ["DIAGNOSTICS", "make_monitor", "order_basis", "per_set_derivatives",
           "sorting_diagnostics"]
