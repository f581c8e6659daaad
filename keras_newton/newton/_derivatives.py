"""Where the derivatives of a Newton step come from: protocol, closed form, autodiff.

Step (3a) needs, for every sample ``i``, the gradient ``g_i = ∇_{y_i} ℓ_i``
and, for the Hessian curvatures, second derivatives. Sources, in the order
``"auto"`` tries them:

* ``"protocol"``: the loss's own ``per_sample_derivatives`` (see
  :mod:`keras_newton.newton._protocol`), for losses autodiff cannot
  differentiate twice (Monte-Carlo estimators);
* ``"closed_form"``: Examples 1-4 of Petersen et al. (2024) for MSE and the
  cross-entropies (:mod:`keras_newton.newton._closed_forms`);
* ``"autodiff"``: nested gradient tapes (:mod:`keras_newton.newton._autodiff`).

Naming one source forces it: ``"protocol"`` and ``"closed_form"`` raise when
the loss has no such derivatives, ``"autodiff"`` differentiates even a loss
that has them (to check them, or to compare paths).

Example:

>>> import keras, tensorflow as tf
>>> loss = keras.losses.CategoricalCrossentropy(from_logits=True)
>>> g, mean_hessian, usable = loss_derivatives(
...     loss, tf.constant([[1.0, 0.0]]), tf.constant([[0.0, 0.0]]), "hessian")
>>> g.numpy()
array([[-0.5,  0.5]], dtype=float32)
"""

from typing import NamedTuple, Optional

import keras
import tensorflow as tf

from keras_newton._keras_private import LossFunctionWrapper
from keras_newton.newton import _autodiff as autodiff
from keras_newton.newton._closed_forms import closed_form_derivatives
from keras_newton.newton.curvatures import ELEMENTWISE_HESSIAN, FISHER, HESSIAN
from keras_newton.newton._protocol import (
    check_protocol_supports,
    provides_curvature,
    shape_errors_named,
)
from keras_newton.newton._usable_samples import finite_rows, masked_mean, usable_count

DERIVATIVE_SOURCES = ("auto", "protocol", "closed_form", "autodiff")


def validate_source(source: str) -> str:
    """Returns ``source`` if it is one of :data:`DERIVATIVE_SOURCES`, else raises."""
    if source not in DERIVATIVE_SOURCES:
        raise ValueError(
            f"Unknown derivatives={source!r}; expected one of {DERIVATIVE_SOURCES}."
        )
    return source


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


def uses_protocol(loss, source: str) -> bool:
    """Whether the derivatives of ``loss`` come from its curvature protocol."""
    return source in ("auto", "protocol") and provides_curvature(loss)


def check_loss(loss, curvature: str, source: str) -> None:
    """Raises a ValueError if ``source`` cannot supply ``curvature`` for ``loss``."""
    if source == "protocol" and not provides_curvature(loss):
        raise ValueError(
            f"derivatives='protocol' needs a loss with per_sample_derivatives; "
            f"{type(loss).__name__} has none."
        )
    if uses_protocol(loss, source):
        check_protocol_supports(loss, curvature)


def loss_derivatives(loss, y_true, outputs, curvature, source="auto", keep=None):
    """Per-sample gradients, the curvature, and which samples are usable.

    A sample is usable when its gradient and, where per-sample Hessians are
    formed, its Hessian are finite, and ``keep`` (optional ``[N, 1]``
    booleans: the caller's excluded samples are ``False``) allows it; the
    empirical Hessian is the mean over the usable samples. An explicit mask,
    not NaN outputs: XLA:CPU does not reliably carry a NaN row through a
    fused graph (measured: a NaN row at one batch position entered the
    curvature).

    Returns:
      ``(gradients [N, m], matrix, usable [N, 1])`` where ``matrix`` is
      ``[m, m]`` (empirical Hessian), ``[N, m, m]`` (element-wise Hessian) or
      ``None`` (Fisher, built from the gradients).
    """
    wants_hessian = curvature != FISHER
    if uses_protocol(loss, source):
        with shape_errors_named(loss, y_true, outputs):
            gradients, hessians = loss.per_sample_derivatives(
                y_true, outputs, hessian=wants_hessian
            )
    else:
        known = None if source == "autodiff" else closed_form_derivatives(loss, y_true, outputs)
        if known is None and source == "closed_form":
            raise ValueError(
                f"derivatives='closed_form', but no closed form matches {loss!r} "
                "(known: MSE, categorical / sparse / binary cross-entropy with "
                "default options)."
            )
        if known is None:
            gradients, matrix = autodiff.autodiff_derivatives(
                autodiff.per_sample_loss_fn(loss), y_true, outputs, curvature, keep
            )
            usable = _kept(finite_rows(gradients), keep)
            if curvature == ELEMENTWISE_HESSIAN:
                usable = tf.logical_and(usable, finite_rows(matrix))
            return gradients, matrix, usable
        gradients, hessians = known
    usable = _kept(finite_rows(gradients), keep)
    if not wants_hessian:
        return gradients, None, usable
    usable = tf.logical_and(usable, finite_rows(hessians))
    if curvature == HESSIAN:
        hessians = masked_mean(hessians, usable)
    return gradients, hessians, usable


def _kept(usable, keep):
    return usable if keep is None else tf.logical_and(usable, tf.reshape(keep, [-1, 1]))


class Derivatives(NamedTuple):
    """The derivatives of one batch, ready for a curvature estimate.

    Attributes:
      gradients: ``[N, m]`` per-sample gradients in the solve dtype, zero for
        samples that are not usable.
      matrix: what :func:`loss_derivatives` formed (``[m, m]``,
        ``[N, m, m]`` or ``None``).
      usable: ``[N, 1]`` booleans.
      count: the number of usable samples, a float.
    """

    gradients: tf.Tensor
    matrix: Optional[tf.Tensor]
    usable: tf.Tensor
    count: tf.Tensor


def batch_derivatives(loss, y_true, outputs, curvature, source="auto",
                      keep=None) -> Derivatives:
    """:func:`loss_derivatives` of flattened ``outputs`` ``[N, ...]`` in their dtype."""
    m = outputs.shape[1:].num_elements()
    gradients, matrix, usable = loss_derivatives(loss, y_true, outputs, curvature, source,
                                                 keep)
    gradients = tf.reshape(tf.cast(gradients, outputs.dtype), [-1, m])
    usable = tf.reshape(usable, [-1, 1])
    gradients = tf.where(usable, gradients, tf.zeros_like(gradients))
    return Derivatives(gradients, matrix, usable, usable_count(usable, outputs.dtype))
