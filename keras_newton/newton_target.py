"""The functional core: Newton targets ``z*`` for a batch of outputs.

Step (3a) of Petersen et al. (2024): a damped Newton step on the loss in
output space,

.. math::

    z^\\star_i = y_i - (M + λ I)^{-1} g_i,

with ``M`` the empirical Hessian ``mean_i H_i`` (default), the empirical Fisher
``mean_i g_i g_iᵀ``, or the sample's own Hessian ``H_i`` (element-wise). The
network is then trained on ``½‖z*_i - y_i‖²`` (step 3b), whose gradient at
``y_i`` is exactly the Newton step ``(M + λI)^{-1} g_i``.

Example:

  >>> import keras, tensorflow as tf, keras_newton as kn
  >>> y_true = tf.constant([[1.0, 0.0], [0.0, 1.0]])
  >>> logits = tf.constant([[0.5, -0.5], [0.2, 0.1]])
  >>> loss = keras.losses.CategoricalCrossentropy(from_logits=True)
  >>> kn.newton_target(loss, y_true, logits, curvature="fisher").shape
  TensorShape([2, 2])

References:
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024, arXiv:2410.19055.
"""

import math
import numbers

import keras
import numpy as np
from keras.src.losses.losses import LossFunctionWrapper
import tensorflow as tf

from keras_newton import curvature as curvature_lib
from keras_newton.closed_forms import closed_form_derivatives
from keras_newton.conjugate_gradient import (
    conjugate_gradient_steps,
    per_sample_hessian_vector_product,
)
from keras_newton.damped_solve import damped_solve, solve_dtype, validate_indefinite
from keras_newton.hessian_estimates import (
    mean_hessian_factorization,
    uses_affordable_hessian,
    validate_hessian_options,
)
from keras_newton.hessian_sketch import low_rank_damped_solve
from keras_newton.woodbury import woodbury_fisher_steps
# Re-exported: other modules and users import them from here.
from keras_newton.cross_replica import global_batch_mean, global_batch_sum  # noqa: F401
from keras_newton.solver_choice import LARGE_OUTPUT_SIZE, SOLVERS, choose_solver  # noqa: F401


def validate_damping(damping) -> float:
    """Checks that ``damping`` is a finite real number ``>= 0``; returns a float.

    Python and NumPy scalars are accepted (``0.1``, ``np.float32(0.1)``,
    ``np.int64(1)``). Tensors are not: damping is validated, and chooses a
    solver, when a loss or model is built, before any value is traced.

    Example:

    >>> import numpy as np
    >>> validate_damping(np.float32(0.5))
    0.5
    """
    if isinstance(damping, (bool, np.bool_)) or not isinstance(damping, numbers.Real):
        raise TypeError(
            "damping must be a Python or NumPy real number (it is checked when "
            f"the loss is built, so not a tensor), got {damping!r}."
        )
    damping = float(damping)
    if not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be finite and >= 0, got {damping!r}.")
    return damping


def resolve_loss(loss):
    """A Keras loss instance, a loss name, or a callable -> something callable."""
    if isinstance(loss, str):
        resolved = keras.losses.get(loss)
        if not isinstance(resolved, keras.losses.Loss):
            resolved = LossFunctionWrapper(resolved, name=loss)
        return resolved
    if isinstance(loss, dict):
        return keras.losses.deserialize(loss)
    if callable(loss):
        return loss
    raise TypeError(
        "loss must be a keras.losses.Loss, a loss name or a callable returning "
        f"per-sample values, got {loss!r}."
    )


def _check_outputs(y_true: tf.Tensor, y_pred: tf.Tensor) -> int:
    if not y_pred.dtype.is_floating:
        raise TypeError(f"y_pred must be a floating tensor, got dtype {y_pred.dtype.name}.")
    if y_pred.shape.rank is None or y_pred.shape.rank < 2:
        raise ValueError(
            "y_pred must have a batch axis and at least one output axis "
            f"(shape [batch, ...]); got shape {y_pred.shape}. Reshape scalar "
            "outputs to [batch, 1]."
        )
    if not y_pred.shape[1:].is_fully_defined():
        raise ValueError(
            f"y_pred must have static output axes to build curvature matrices; "
            f"got shape {y_pred.shape}."
        )
    batch_true, batch_pred = y_true.shape[:1], y_pred.shape[:1]
    if y_true.shape.rank and not batch_true.is_compatible_with(batch_pred):
        raise ValueError(
            f"y_true and y_pred must have the same batch size; got shapes "
            f"{y_true.shape} and {y_pred.shape}."
        )
    return y_pred.shape[1:].num_elements()


def loss_derivatives(loss, y_true, outputs, curvature, use_closed_form=True):
    """Per-sample gradients, the curvature, and which samples are usable.

    Sources, in order: the loss's own :mod:`curvature protocol
    <keras_newton.curvature>`, closed forms, nested tapes. A sample is usable
    when its gradient and, where per-sample Hessians are formed, its Hessian
    are finite; the empirical Hessian is the mean over the usable samples.

    Returns:
      ``(gradients [N, m], matrix, usable [N, 1])`` where ``matrix`` is
      ``[m, m]`` (empirical Hessian), ``[N, m, m]`` (element-wise Hessian) or
      ``None`` (Fisher, built from the gradients).
    """
    wants_hessian = curvature != curvature_lib.FISHER
    if curvature_lib.provides_curvature(loss):
        with curvature_lib.shape_errors_named(loss, y_true, outputs):
            gradients, hessians = loss.per_sample_derivatives(
                y_true, outputs, hessian=wants_hessian
            )
    else:
        known = closed_form_derivatives(loss, y_true, outputs) if use_closed_form else None
        if known is None:
            gradients, matrix = curvature_lib.autodiff_derivatives(
                curvature_lib.per_sample_loss_fn(loss), y_true, outputs, curvature
            )
            usable = curvature_lib.finite_rows(gradients)
            if curvature == curvature_lib.ELEMENTWISE_HESSIAN:
                usable = tf.logical_and(usable, curvature_lib.finite_rows(matrix))
            return gradients, matrix, usable
        gradients, hessians = known
    usable = curvature_lib.finite_rows(gradients)
    if not wants_hessian:
        return gradients, None, usable
    usable = tf.logical_and(usable, curvature_lib.finite_rows(hessians))
    if curvature == curvature_lib.HESSIAN:
        hessians = curvature_lib.masked_mean(hessians, usable)
    return gradients, hessians, usable


def newton_target(
    loss,
    y_true,
    y_pred,
    curvature: str = "hessian",
    damping: float = 1e-3,
    indefinite: str = "abs",
    use_closed_form: bool = True,
    solver: str = "auto",
    cg_max_iterations: int = 50,
    cg_tolerance: float = 1e-5,
    hessian_samples=None,
    hessian_rank=None,
    hessian_seed: int = 0,
    hessian_cache=None,
    hessian_products: str = "autodiff",
) -> tf.Tensor:
    """Computes the Newton target ``z* = y - (M + λI)^{-1} g`` of a batch.

    Args:
      loss: a ``keras.losses.Loss``, a loss name, or a callable
        ``(y_true, y_pred) -> [N, ...]`` per-sample values. A loss with a
        ``per_sample_derivatives`` method supplies its own derivatives.
      y_true: targets, in whatever form ``loss`` expects.
      y_pred: outputs ``[N, ...]`` (floating); trailing axes are flattened to
        ``m`` entries per sample.
      curvature: ``"hessian"`` (empirical Hessian, default), ``"fisher"``
        (empirical Fisher) or ``"elementwise_hessian"``.
      damping: Tikhonov damping ``λ >= 0`` on the per-sample scale.
      indefinite: ``"abs"`` (saddle-free) or ``"clip"``; see
        :func:`keras_newton.damped_solve.damped_solve`. Applies to the dense,
        Woodbury (a PSD Fisher: no effect) and affordable-Hessian solves, not
        to CG, which handles negative curvature by stopping (below).
      use_closed_form: use the closed forms of
        :mod:`keras_newton.closed_forms` for matching Keras losses.
      solver: ``"dense"`` (eigendecomposition of ``m x m`` matrices),
        ``"woodbury"`` (Fisher only: an ``N x N`` solve, see
        :mod:`keras_newton.woodbury`), ``"cg"`` (element-wise Hessian only:
        conjugate gradients with Hessian-vector products, see
        :mod:`keras_newton.conjugate_gradient`) or ``"auto"``, which picks
        Woodbury / CG when ``m > 256`` (for Woodbury: ``λ > 0`` and ``m``
        exceeds a static batch size; for CG: ``indefinite="abs"``, the
        default) and dense otherwise. CG ignores ``indefinite``: at the first
        search direction ``p`` with ``pᵀ(H_i + λI)p ≤ 0`` it stops and returns
        the iterate so far, or ``g_i / max(λ, 1)`` if that happens at the first
        iteration. So for indefinite ``H_i`` the CG step differs from the
        dense saddle-free step; pass ``solver="dense"`` to keep ``"abs"``
        above ``m = 256``. ``solver="cg"`` with ``indefinite="clip"`` raises.
      cg_max_iterations, cg_tolerance: CG iteration cap and relative residual.
      hessian_samples: ``curvature="hessian"`` only: estimate ``H̄`` from the
        first ``s`` samples of the (shuffled) batch, an unbiased estimate;
        ``None`` (default) uses the whole batch. See
        :mod:`keras_newton.hessian_estimates`.
      hessian_rank: ``curvature="hessian"`` only: a rank-``r`` randomized
        eigen-sketch of ``H̄`` from ``2r`` Hessian-vector products (exact for
        ``r = m``); ``None`` (default) forms the full ``m×m`` matrix.
      hessian_seed: int seed of the sketch's Gaussian probes.
      hessian_cache: a :class:`keras_newton.curvature_cache.CurvatureCache`:
        the factorization of ``H̄`` is recomputed every ``refresh_every``
        calls and reused in between (``curvature="hessian"`` only).
      hessian_products: how the sketch's Hessian-vector products are
        computed: ``"autodiff"`` (reverse-over-reverse, exact; default) or
        ``"finite_differences"`` (central differences of gradients, relative
        error ~1e-3 in float32; first derivatives only, so it works for
        losses whose second derivatives do not compile, e.g. a
        ``tf.while_loop`` under XLA). Needs ``hessian_rank``; see
        :mod:`keras_newton.hessian_sketch`.

    Returns:
      ``z*`` with the shape and dtype of ``y_pred``, gradient stopped. Samples
      whose gradient (or per-sample Hessian, where one is formed) is not
      finite get ``z* = y`` (no step) and are left out of the batch
      curvature, so the other samples keep their Newton steps. If the batch
      curvature is still not finite (a sample with a finite gradient but a
      non-finite Hessian on the autodiff empirical-Hessian path, or a
      ``hessian_rank`` sketch) the step falls back to the plain gradient step
      ``z* = y - g`` (Theorem 2 of the paper: ordinary training).

    Raises:
      ValueError: for unknown options, negative damping, outputs without a
        batch and an output axis, or ``y_true`` and ``y_pred`` whose shapes
        the loss does not accept (the message names both shapes).
      TypeError: for a non-numeric damping or integer outputs.
    """
    curvature_lib.validate_curvature(curvature)
    damping = validate_damping(damping)
    validate_indefinite(indefinite)
    loss = resolve_loss(loss)
    curvature_lib.check_protocol_supports(loss, curvature)
    validate_hessian_options(curvature, hessian_samples, hessian_rank, hessian_seed,
                             getattr(hessian_cache, "refresh_every", 1), loss,
                             hessian_products)
    affordable = uses_affordable_hessian(hessian_samples, hessian_rank, hessian_cache)
    y_pred = tf.convert_to_tensor(y_pred)
    y_true = tf.nest.map_structure(tf.convert_to_tensor, y_true)
    m = _check_outputs(y_true if tf.is_tensor(y_true) else y_pred, y_pred)

    dtype = solve_dtype(y_pred.dtype)
    outputs = tf.cast(tf.stop_gradient(y_pred), dtype)
    if tf.is_tensor(y_true) and y_true.dtype.is_floating:
        y_true = tf.cast(y_true, dtype)
    solver = choose_solver(solver, curvature, damping, m, y_pred.shape[0], loss, indefinite)
    # Matrix-free solvers need gradients only; their curvature is implicit.
    gradients, matrix, usable = loss_derivatives(
        loss, y_true, outputs,
        curvature_lib.FISHER if solver != "dense" or affordable else curvature,
        use_closed_form,
    )
    gradients = tf.reshape(tf.cast(gradients, dtype), [-1, m])
    usable = tf.reshape(usable, [-1, 1])
    gradients = tf.where(usable, gradients, tf.zeros_like(gradients))
    count = curvature_lib.usable_count(usable, dtype)

    matrix_ok = True
    if affordable:
        step, matrix_ok = _affordable_hessian_step(
            loss, y_true, outputs, gradients, damping, indefinite, use_closed_form,
            hessian_samples, hessian_rank, hessian_seed, hessian_cache, hessian_products,
        )
    elif solver == "woodbury":
        step = _usable_woodbury_steps(gradients, count, damping)
    elif solver == "cg":
        product = per_sample_hessian_vector_product(
            curvature_lib.per_sample_loss_fn(loss), y_true, outputs
        )
        step = conjugate_gradient_steps(
            lambda v: tf.reshape(product(tf.reshape(v, tf.shape(outputs))), [-1, m]),
            gradients, damping, cg_max_iterations, cg_tolerance,
        )
    elif curvature == curvature_lib.ELEMENTWISE_HESSIAN:
        matrix = tf.cast(matrix, dtype)
        matrix = tf.where(usable[..., None], matrix, tf.zeros_like(matrix))
        step = damped_solve(matrix, gradients[:, None, :], damping, indefinite)[:, 0]
    else:
        if curvature == curvature_lib.FISHER:
            matrix = tf.matmul(gradients, gradients, transpose_a=True) / tf.maximum(count, 1.0)
        matrix = global_batch_mean(tf.cast(matrix, dtype), count)
        matrix_ok = tf.reduce_all(tf.math.is_finite(matrix))
        matrix = tf.where(matrix_ok, matrix, tf.zeros_like(matrix))
        step = damped_solve(matrix, gradients, damping, indefinite)
    step = tf.where(matrix_ok, step, gradients)
    step_ok = tf.logical_and(
        usable, tf.reduce_all(tf.math.is_finite(step), axis=1, keepdims=True)
    )
    step = tf.where(step_ok, step, tf.zeros_like(step))

    flat_outputs = tf.reshape(outputs, [-1, m])
    # Non-finite outputs have nothing sensible to move towards: keep them.
    target = tf.where(tf.math.is_finite(flat_outputs), flat_outputs - step, flat_outputs)
    target = tf.reshape(target, tf.shape(y_pred))
    return tf.stop_gradient(tf.cast(target, y_pred.dtype))


def _usable_woodbury_steps(gradients, count, damping):
    """Woodbury Fisher steps with the Fisher averaged over the usable samples.

    :func:`woodbury_fisher_steps` divides ``GᵀG`` by the whole (global) batch
    size ``N``; left-out samples are zero rows of ``G``. Scaling ``G`` by
    ``s = sqrt(N / k)``, with ``k`` usable samples, makes that ``GᵀG / k``
    (the dense path's Fisher); the steps of the scaled rows are ``s`` times
    the wanted ones.
    """
    total = global_batch_sum(tf.cast(tf.shape(gradients)[0], gradients.dtype))
    usable_total = global_batch_sum(count)
    scale = tf.sqrt(total / tf.maximum(usable_total, 1.0))
    return woodbury_fisher_steps(gradients * scale, damping) / scale


def _affordable_hessian_step(loss, y_true, outputs, gradients, damping, indefinite,
                             use_closed_form, samples, rank, seed, cache, products):
    """Newton steps from a subsampled / sketched / cached empirical Hessian."""
    m = gradients.shape[-1]
    # The dense estimate averages the usable samples of the (sub)batch only;
    # the all-reduce must weigh each replica by that count, not the batch size.
    usable_counts = []

    def dense_mean_hessian(targets, values):
        _, mean, usable = loss_derivatives(
            loss, targets, values, curvature_lib.HESSIAN, use_closed_form
        )
        usable_counts.append(curvature_lib.usable_count(usable, values.dtype))
        return mean

    def batch_mean(mean, count):
        return global_batch_mean(mean, usable_counts.pop() if usable_counts else count)

    def compute():
        return mean_hessian_factorization(
            loss, y_true, outputs, dense_mean_hessian, batch_mean,
            hessian_samples=samples, hessian_rank=rank, hessian_seed=seed,
            hessian_products=products,
        )

    if cache is None:
        factorization = compute()
    else:
        factorization = cache.factorization(compute, rank or m, m, gradients.dtype)
    matrix_ok = tf.logical_and(
        tf.reduce_all(tf.math.is_finite(factorization[0])),
        tf.reduce_all(tf.math.is_finite(factorization[1])),
    )
    factorization = tuple(tf.where(matrix_ok, f, tf.zeros_like(f)) for f in factorization)
    step = low_rank_damped_solve(factorization, gradients, damping, indefinite)
    return step, matrix_ok
