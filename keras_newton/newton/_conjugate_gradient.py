"""Element-wise Hessian Newton steps without forming ``m × m`` matrices.

Each sample's damped Newton system ``(H_i + λI) x_i = g_i`` is solved by
conjugate gradients (Hestenes & Stiefel, 1952), all samples at once, with
Hessian-vector products by forward-over-reverse differentiation
(``tf.autodiff.ForwardAccumulator`` around a gradient tape; Pearlmutter, 1994).
Memory is ``O(N·m)``; each iteration costs about two gradient evaluations.

Stopping: a sample stops when ``‖r_i‖ ≤ tolerance · ‖g_i‖`` or after
``max_iterations`` (default 50); the loop is a fixed-shape ``tf.while_loop``
that XLA compiles.

Negative curvature. CG cannot form ``|H_i|`` (the saddle-free transform of the
dense solver) without an eigendecomposition, so the ``indefinite`` option of
:mod:`keras_newton.newton._eigen_solve` does not apply here. Instead (truncated CG,
as in Steihaug's method), CG runs on ``H_i + λI`` as it is, and the first
search direction ``p_k`` with non-positive curvature
``p_kᵀ(H_i + λI)p_k ≤ 0`` stops that sample:

* at ``k ≥ 1`` the step is the iterate ``x_k`` built so far;
* at ``k = 0`` (``g_iᵀ(H_i + λI)g_i ≤ 0``) the step is the gradient
  ``g_i / max(λ, 1)``.

Both are descent directions (``g_iᵀ x_k = Σ_j α_j ‖r_j‖² > 0``). When
``H_i + λI`` is positive definite CG returns the plain damped Newton step
``(H_i + λI)^{-1} g_i`` even if ``H_i`` itself is indefinite (eigenvalues in
``(-λ, 0)`` are not made absolute), so for indefinite Hessians the result
differs from the dense solver's ``"abs"``/``"clip"`` steps.

References:
  Petersen et al., "Newton Losses", NeurIPS 2024, arXiv:2410.19055.
  Pearlmutter, "Fast exact multiplication by the Hessian", 1994.
  Steihaug, "The conjugate gradient method and trust regions in large scale
  optimization", 1983.
"""

from typing import Callable

import tensorflow as tf


def per_sample_hessian_vector_product(
    per_sample: Callable, y_true, outputs: tf.Tensor
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns ``v -> [H_i v_i]_i`` for flattened outputs ``[N, m]``."""
    # tf.shape, not the static shape: the batch axis is None when traced
    # for any batch size (Keras fit), and a partial TensorShape is no tensor.
    shape = tf.shape(outputs)

    def product(vectors):
        with tf.autodiff.ForwardAccumulator(outputs, vectors) as accumulator:
            with tf.GradientTape() as tape:
                tape.watch(outputs)
                total = tf.reduce_sum(per_sample(y_true, tf.reshape(outputs, shape)))
            gradients = tape.gradient(total, outputs)
        return accumulator.jvp(gradients, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return product


def conjugate_gradient_steps(
    hessian_vector_product: Callable[[tf.Tensor], tf.Tensor],
    gradients: tf.Tensor,
    damping: float,
    max_iterations: int = 50,
    tolerance: float = 1e-5,
) -> tf.Tensor:
    """Solves ``(H_i + λI) x_i = g_i`` for every row by batched CG.

    Args:
      hessian_vector_product: ``[N, m] -> [N, m]``, row ``i`` is ``H_i v_i``.
      gradients: ``[N, m]`` right-hand sides.
      damping: ``λ >= 0``.
      max_iterations: iteration cap (static).
      tolerance: relative residual at which a sample stops.

    Returns:
      ``[N, m]`` approximate Newton steps.
    """
    dtype = gradients.dtype
    # A float, or a tensor (adaptive damping); a float is not rounded to float32 first.
    lam = tf.cast(damping, dtype) if tf.is_tensor(damping) else tf.constant(damping, dtype)

    def apply(v):
        return hessian_vector_product(v) + lam * v

    def dot(a, b):
        return tf.reduce_sum(a * b, axis=1, keepdims=True)

    x = tf.zeros_like(gradients)
    residual = gradients
    direction = gradients
    residual_norm = dot(residual, residual)
    target = tf.square(tf.constant(tolerance, dtype)) * residual_norm
    active = residual_norm > target
    fallback = gradients / tf.maximum(lam, tf.constant(1.0, dtype))
    moved = tf.zeros_like(active)

    def body(i, x, residual, direction, residual_norm, active, moved):
        product = apply(direction)
        curvature = dot(direction, product)
        positive = curvature > 0
        go = tf.logical_and(active, positive)
        alpha = tf.where(go, residual_norm / tf.where(go, curvature, 1.0), 0.0)
        x = x + alpha * direction
        residual = residual - alpha * product
        new_norm = dot(residual, residual)
        beta = tf.where(go, new_norm / tf.where(go, residual_norm, 1.0), 0.0)
        direction = tf.where(go, residual + beta * direction, direction)
        moved = tf.logical_or(moved, go)
        active = tf.logical_and(go, new_norm > target)
        residual_norm = tf.where(go, new_norm, residual_norm)
        return i + 1, x, residual, direction, residual_norm, active, moved

    def keep_going(i, x, residual, direction, residual_norm, active, moved):
        return tf.logical_and(i < max_iterations, tf.reduce_any(active))

    _, x, _, _, _, _, moved = tf.while_loop(
        keep_going,
        body,
        (tf.constant(0), x, residual, direction, residual_norm, active, moved),
        maximum_iterations=max_iterations,
    )
    return tf.where(moved, x, fallback)
