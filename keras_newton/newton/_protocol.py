"""The curvature protocol: losses that supply their own derivatives.

A loss that autodiff cannot differentiate twice (a Monte-Carlo estimator, a
non-differentiable algorithm) supplies its own estimates by defining::

    def per_sample_derivatives(self, y_true, y_pred, hessian: bool):
        return gradients, hessians   # [N, m] and [N, m, m] (or None)

where ``m`` is the number of output entries per sample (``y_pred`` flattened
row-major) and the per-sample loss is the mean over the non-batch axes of
``loss.call(y_true, y_pred)``. A loss that can only provide gradients sets the
class attribute ``provides_hessian = False``; it then supports
``curvature="fisher"`` only. This mirrors K-FAC's loss functions, which expose
curvature with respect to the model outputs (Martens & Grosse, 2015).

References:
  Petersen et al., "Newton Losses: Using Curvature Information for Learning
  with Differentiable Algorithms", NeurIPS 2024 (arXiv:2410.19055).
"""

import contextlib
import re

import tensorflow as tf

from keras_newton.newton.curvatures import FISHER


def provides_curvature(loss) -> bool:
    """Whether ``loss`` implements the curvature protocol."""
    return callable(getattr(loss, "per_sample_derivatives", None))


def check_protocol_supports(loss, curvature: str) -> None:
    """Raises a ValueError if a protocol loss cannot supply ``curvature``."""
    if (
        provides_curvature(loss)
        and curvature != FISHER
        and not getattr(loss, "provides_hessian", True)
    ):
        raise ValueError(
            f"curvature={curvature!r} needs per-sample Hessians, which "
            f"{type(loss).__name__} cannot provide (it estimates gradients "
            f"only). Use curvature='fisher' instead."
        )


def loss_name(loss) -> str:
    """A readable name of a loss name, Keras loss, function or callable object."""
    if isinstance(loss, str):
        return loss
    return (
        getattr(loss, "name", None)
        or getattr(loss, "__name__", None)
        or type(loss).__name__
    )


# Errors TensorFlow and Keras raise for tensors of the wrong shape: ValueError
# at trace time, InvalidArgumentError when an eager op runs.
_SHAPE_WORDS = re.compile(r"shape|rank|dimension|broadcast|squeeze|reshape", re.IGNORECASE)


def _shapes(structure):
    return tf.nest.map_structure(lambda t: tuple(getattr(t, "shape", ())), structure)


@contextlib.contextmanager
def shape_errors_named(loss, y_true, y_pred, detail: str = ""):
    """Re-raises the wrapped loss's shape errors as a ValueError naming both inputs.

    Keras and TensorFlow report a mismatch deep inside an op (``Incompatible
    shapes: [4,3] vs. [4,4] [Op:Sub]`` or, at trace time, an unnamed node);
    this names ``y_true``, ``y_pred``, their shapes and the loss instead.
    Errors that do not mention shapes pass through unchanged. ``detail``
    says how the loss was evaluated when TensorFlow's own message shows
    other shapes (the stacked copies of a Monte-Carlo estimate, say).

    Example:

    >>> import tensorflow as tf
    >>> try:
    ...     with shape_errors_named("mse", tf.zeros([4, 3]), tf.zeros([4, 4])):
    ...         raise ValueError("Incompatible shapes: [4,3] vs. [4,4]")
    ... except ValueError as error:
    ...     print(str(error).split(":")[0])
    y_true of shape (4, 3) and y_pred of shape (4, 4) do not fit the loss 'mse'
    """
    try:
        yield
    except (ValueError, tf.errors.InvalidArgumentError) as error:
        message = getattr(error, "message", None) or str(error)
        if not _SHAPE_WORDS.search(message):
            raise
        # Eager op errors start with "{{function_node ...}}": noise here.
        message = re.sub(r"\{\{[^}]*\}\}\s*", "", message).strip()
        raise ValueError(
            f"y_true of shape {_shapes(y_true)} and y_pred of shape "
            f"{_shapes(y_pred)} do not fit the loss {loss_name(loss)!r}"
            f"{f' (evaluated {detail})' if detail else ''}: {message}"
        ) from error
