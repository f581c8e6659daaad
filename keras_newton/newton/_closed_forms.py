"""Closed-form per-sample gradients and Hessians of common Keras losses.

These are Examples 1-4 and supplementary B of Petersen et al. (2024). With
``p`` the targets, ``q = softmax(y)`` or ``s = sigmoid(y)`` and ``m`` the number
of output entries per sample (Keras takes the mean over them):

.. math::

    \\text{MSE:}\\; g = \\tfrac{2}{m}(y - p),\\; H = \\tfrac{2}{m} I \\qquad
    \\text{softmax CE:}\\; g = q - p,\\; H = \\operatorname{diag}(q) - q q^\\top

    \\text{sigmoid BCE:}\\; g = \\tfrac1m (s - p),\\; H = \\tfrac1m
    \\operatorname{diag}(s(1-s)) \\qquad
    \\text{BCE:}\\; g = \\tfrac1m \\frac{y - p}{y(1-y)},\\;
    H = \\tfrac1m \\operatorname{diag}\\Big(\\frac{p}{y^2} + \\frac{1-p}{(1-y)^2}\\Big)

For softmax cross-entropy over ``[N, T, C]`` outputs the Hessian is
block-diagonal with one ``C x C`` block per position, scaled by ``1/T``.
They replace nested tapes when the wrapped loss is the matching Keras loss with
default options, and agree with autodiff to float precision (tested). Shapes
are checked as the matching Keras loss checks them, so a closed form never
broadcasts targets that Keras would reject.

References:
  Petersen et al., "Newton Losses", NeurIPS 2024, arXiv:2410.19055.
"""

from typing import Optional, Tuple

import keras
import tensorflow as tf

from keras_newton._keras_private import LossFunctionWrapper
from keras_newton.newton._protocol import loss_name


def _options(loss) -> Optional[Tuple[object, dict]]:
    if isinstance(loss, LossFunctionWrapper):
        return loss.fn, dict(loss._fn_kwargs)
    return None


def _is_default(options: dict, **expected) -> bool:
    for key, value in expected.items():
        if options.get(key, value) != value:
            return False
    return True


def _shape_error(loss, y_true, y_pred, requirement: str) -> ValueError:
    return ValueError(
        f"y_true of shape {tuple(y_true.shape)} and y_pred of shape "
        f"{tuple(y_pred.shape)} do not fit the loss {loss_name(loss)!r}: "
        f"{requirement}."
    )


def _check_same_shape(loss, y_true, y_pred) -> None:
    """Dense cross-entropies: Keras requires equal shapes (``None`` matches any)."""
    if not y_true.shape.is_compatible_with(y_pred.shape):
        raise _shape_error(
            loss, y_true, y_pred,
            "it needs targets of the same shape as the outputs, like Keras' "
            "'Arguments `target` and `output` must have the same shape'",
        )


def _broadcasts_to_outputs(loss, y_true, y_pred) -> bool:
    """MSE: whether ``y_pred - y_true`` has the shape of ``y_pred``.

    Raises if the two do not broadcast at all (as Keras' subtraction does);
    returns False when they broadcast to something larger than ``y_pred``
    (``y_true [N, 3]`` with ``y_pred [N, 1]``): Keras accepts that, and
    autodiff handles it.
    """
    try:
        shape = tf.broadcast_static_shape(y_true.shape, y_pred.shape)
    except ValueError:
        raise _shape_error(
            loss, y_true, y_pred, "they do not broadcast against each other"
        ) from None
    return shape[1:].as_list() == y_pred.shape[1:].as_list()


def _sparse_labels(loss, labels, y_pred) -> tf.Tensor:
    """Integer labels ``[N, ...]`` matching ``y_pred [N, ..., C]``, checked as Keras does."""
    labels = tf.cast(labels, tf.int32)
    if labels.shape.rank == y_pred.shape.rank:
        if labels.shape[-1] != 1:
            raise _shape_error(
                loss, labels, y_pred,
                "sparse labels need one axis fewer than the outputs, or a last axis of size 1",
            )
        labels = tf.squeeze(labels, axis=-1)
    if not labels.shape.is_compatible_with(y_pred.shape[:-1]):
        raise _shape_error(
            loss, labels, y_pred,
            "sparse labels need the shape of the outputs without their class axis",
        )
    return labels


def _diagonal(values: tf.Tensor) -> tf.Tensor:
    return tf.linalg.diag(values)


def _block_diagonal(blocks: tf.Tensor) -> tf.Tensor:
    """``[N, K, C, C]`` blocks -> ``[N, K*C, K*C]`` block-diagonal matrices."""
    groups, classes = blocks.shape[1], blocks.shape[2]
    eye = tf.eye(groups, dtype=blocks.dtype)
    dense = tf.einsum("kl,nkab->nkalb", eye, blocks)
    return tf.reshape(dense, [-1, groups * classes, groups * classes])


def _mse(y_true, y_pred, m):
    difference = tf.reshape(y_pred - tf.cast(y_true, y_pred.dtype), [-1, m])
    gradients = 2.0 / m * difference
    eye = tf.eye(m, dtype=y_pred.dtype) * (2.0 / m)
    hessians = tf.broadcast_to(eye, [tf.shape(gradients)[0], m, m])
    return gradients, hessians


def _softmax_cross_entropy(probabilities, y_pred, m):
    classes = y_pred.shape[-1]
    groups = m // classes
    logits = tf.reshape(y_pred, [-1, groups, classes])
    targets = tf.reshape(tf.cast(probabilities, y_pred.dtype), [-1, groups, classes])
    q = tf.nn.softmax(logits, axis=-1)
    mass = tf.reduce_sum(targets, axis=-1, keepdims=True)  # 1 for distributions
    gradients = tf.reshape(mass * q - targets, [-1, m]) / groups
    blocks = mass[..., None] * (
        tf.linalg.diag(q) - q[..., :, None] * q[..., None, :]
    )
    return gradients, _block_diagonal(blocks) / groups


def _sigmoid_cross_entropy(y_true, y_pred, m):
    s = tf.reshape(tf.sigmoid(y_pred), [-1, m])
    p = tf.reshape(tf.cast(y_true, y_pred.dtype), [-1, m])
    return (s - p) / m, _diagonal(s * (1.0 - s) / m)


def _binary_cross_entropy(y_true, y_pred, m):
    y = tf.reshape(y_pred, [-1, m])
    p = tf.reshape(tf.cast(y_true, y_pred.dtype), [-1, m])
    eps = keras.backend.epsilon()
    # Keras clips probabilities to [eps, 1 - eps]; outside, derivatives are 0.
    inside = tf.logical_and(y > eps, y < 1.0 - eps)
    y = tf.clip_by_value(y, eps, 1.0 - eps)
    gradients = (y - p) / (y * (1.0 - y)) / m
    second = (p / tf.square(y) + (1.0 - p) / tf.square(1.0 - y)) / m
    zero = tf.zeros_like(y)
    return tf.where(inside, gradients, zero), _diagonal(tf.where(inside, second, zero))


def closed_form_derivatives(
    loss, y_true: tf.Tensor, y_pred: tf.Tensor
) -> Optional[Tuple[tf.Tensor, tf.Tensor]]:
    """Per-sample ``(gradients [N, m], hessians [N, m, m])`` if known, else None.

    Only exact matches of Keras' loss functions with default options (no label
    smoothing, last-axis reduction) are recognized; anything else returns
    ``None`` so the caller falls back to autodiff.
    """
    options = _options(loss)
    if options is None:
        return None
    fn, kwargs = options
    m = y_pred.shape[1:].num_elements()
    losses = keras.losses
    # Different ranks: Keras squeezes or expands a last axis of size 1 first;
    # leave those cases to autodiff, which runs Keras' own code.
    same_rank = y_true.shape.rank == y_pred.shape.rank
    if fn is losses.mean_squared_error and not kwargs:
        if not same_rank or not _broadcasts_to_outputs(loss, y_true, y_pred):
            return None
        return _mse(y_true, y_pred, m)
    defaults = dict(label_smoothing=0.0, axis=-1)
    if fn is losses.categorical_crossentropy and _is_default(kwargs, **defaults):
        if kwargs.get("from_logits") and same_rank:
            _check_same_shape(loss, y_true, y_pred)
            return _softmax_cross_entropy(y_true, y_pred, m)
        return None
    if fn is losses.sparse_categorical_crossentropy and _is_default(
        kwargs, ignore_class=None, axis=-1
    ):
        if not kwargs.get("from_logits"):
            return None
        labels = _sparse_labels(loss, y_true, y_pred)
        one_hot = tf.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        return _softmax_cross_entropy(one_hot, y_pred, m)
    if fn is losses.binary_crossentropy and _is_default(kwargs, **defaults):
        if not same_rank:
            return None
        _check_same_shape(loss, y_true, y_pred)
        if kwargs.get("from_logits"):
            return _sigmoid_cross_entropy(y_true, y_pred, m)
        return _binary_cross_entropy(y_true, y_pred, m)
    return None
