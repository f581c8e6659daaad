"""Predicted and actual loss reduction of a Newton step (for adaptive damping).

For the step ``s_i = (M̃ + λI)^{-1} g_i`` of step (3a) (Petersen et al.,
2024), ``z*_i = y_i - s_i``, the quadratic model the solve minimizes
predicts the reduction

.. math::

    \\text{pred}_i = g_iᵀ s_i - \\tfrac12 s_iᵀ \\tilde M s_i
                   = \\tfrac12 \\big(g_iᵀ s_i + λ \\lVert s_i \\rVert^2\\big),

using ``s_iᵀ(M̃ + λI)s_i = s_iᵀ g_i``, which exact solves satisfy and
conjugate-gradient iterates satisfy too (Galerkin condition), so no extra
product with ``M̃`` is needed. The actual reduction is
``ℓ_i(y_i) - ℓ_i(z*_i)``. Both are summed over the samples that took a
step and all-reduced over replicas, so every replica sees the same ``ρ``.

A loss that draws Monte-Carlo noise from a ``seed_generator``
(:class:`keras_newton.SmoothedLoss`, :class:`keras_newton.FenchelYoungLoss`)
is evaluated at ``y`` and at ``z*`` under the *same* draw: the generator is
rewound between the two evaluations, so ``ρ`` compares the loss and not
two noise samples (common random numbers).

Example:

>>> import tensorflow as tf
>>> g, s = tf.constant([[2.0]]), tf.constant([[1.0]])   # M̃ = 2, λ = 0
>>> float(predicted_reduction(g, s, 0.0, tf.constant([[True]])))
1.0
"""

import tensorflow as tf

from keras_newton.newton._autodiff import per_sample_loss_fn
from keras_newton.newton._distribution import global_batch_sum


def predicted_reduction(gradients, steps, damping, stepped, shrink=None) -> tf.Tensor:
    """``Σ_i ½(g_iᵀ s_i + λ‖s_i‖²)`` over the ``stepped`` ``[N, 1]`` samples, global.

    ``shrink``: ``[N, 1]`` factors ``c_i <= 1`` by which a trust radius
    shortened the solved steps (``steps`` are the shortened ones, ``c_i s_i``).
    The model at ``c s`` is ``c gᵀs - ½c² sᵀM̃s`` with
    ``sᵀM̃s = gᵀs - λ‖s‖²`` (the identity above), i.e. in terms of the
    shortened step ``t = c s``: ``gᵀt - ½(c gᵀt - λ‖t‖²)``; ``c = 1`` gives
    the formula above.
    """
    damping = (tf.cast(damping, gradients.dtype) if tf.is_tensor(damping)
               else tf.constant(damping, gradients.dtype))
    linear = tf.reduce_sum(gradients * steps, axis=1)
    square = tf.reduce_sum(tf.square(steps), axis=1)
    if shrink is None:
        per_sample = 0.5 * (linear + damping * square)
    else:
        c = tf.reshape(tf.cast(shrink, gradients.dtype), [-1])
        per_sample = linear - 0.5 * (c * linear - damping * square)
    stepped = tf.reshape(stepped, [-1])
    return global_batch_sum(tf.reduce_sum(tf.where(stepped, per_sample, 0.0)))


def paired_values(loss, y_true, first, second):
    """Per-sample values of ``loss`` at ``first`` and at ``second``, one noise draw.

    Rewinds ``loss.seed_generator`` (a ``keras.random.SeedGenerator``)
    between the two evaluations when the loss has one; afterwards the
    generator has advanced by one draw.
    """
    per_sample = per_sample_loss_fn(loss)
    generator = getattr(loss, "seed_generator", None)
    if generator is None:
        return per_sample(y_true, first), per_sample(y_true, second)
    start = tf.identity(generator.state.value)
    at_first = per_sample(y_true, first)
    generator.state.assign(start)
    at_second = per_sample(y_true, second)
    return at_first, at_second


def actual_reduction(loss, y_true, outputs, moved, stepped) -> tf.Tensor:
    """``Σ_i ℓ_i(y_i) - ℓ_i(z*_i)`` over the ``stepped`` samples, global.

    Args:
      loss: the wrapped loss; ``y_true``: its targets.
      outputs: ``[N, ...]`` outputs ``y`` in the solve dtype.
      moved: ``z*`` of the same shape and dtype.
      stepped: ``[N, 1]`` booleans, the samples that took a step.
    """
    before, after = paired_values(loss, y_true, outputs, moved)
    change = tf.cast(before, outputs.dtype) - tf.cast(after, outputs.dtype)
    stepped = tf.reshape(stepped, [-1])
    return global_batch_sum(tf.reduce_sum(tf.where(stepped, change, 0.0)))
