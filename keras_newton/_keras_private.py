"""The one module that imports Keras internals (``keras.src``).

Keras 3 has no public API for these; every other module of the package takes
them from here, so that a Keras upgrade that moves one breaks this file, and
``tests/test_keras_private.py`` says which name moved, instead of a loss or
a model failing somewhere downstream.

- ``LossFunctionWrapper``: the ``keras.losses.Loss`` a loss *function* or
  name becomes (``keras.losses.get("mse")`` is a plain function); the core
  wraps names in it and recognizes wrapped closed-form losses by it.
- ``Functional`` and ``functional_init_arguments``: what ``keras.Model``
  builds from ``Model(inputs, outputs)``, and its test of the arguments;
  ``NewtonLossModel(inputs, outputs)`` builds its Functional subclass.
- ``loss_module``: ``keras.src.losses.loss``, for
  ``scale_loss_for_distribution`` / ``unscale_loss_for_distribution``, the
  per-replica loss scaling a custom ``train_step`` must repeat to report
  the same loss as ``keras.Model`` under ``tf.distribute``.
- ``symbolic_build``: ``Trainer._symbolic_build``, with which ``fit`` makes
  a model's variables, its compiled metrics' and its optimizer's from a
  batch's spec before the first step; ``kn.distribute.fit`` needs them all
  to exist before it restores a checkpoint.
"""

from keras.src.losses import loss as loss_module
from keras.src.losses.losses import LossFunctionWrapper
from keras.src.models.functional import Functional
from keras.src.models.model import functional_init_arguments
from keras.src.trainers.trainer import Trainer

# What the package uses, by the paths above (tests check each one).
PRIVATE_PATHS = {
    "LossFunctionWrapper": "keras.src.losses.losses",
    "Functional": "keras.src.models.functional",
    "functional_init_arguments": "keras.src.models.model",
    "scale_loss_for_distribution": "keras.src.losses.loss",
    "unscale_loss_for_distribution": "keras.src.losses.loss",
    "Trainer": "keras.src.trainers.trainer",
}


def symbolic_build(model, data_spec) -> None:
    """Builds ``model``, its compiled loss and metrics and its optimizer from ``data_spec``.

    Args:
      model: a compiled Keras model.
      data_spec: the (nested) ``tf.TensorSpec`` of one batch ``(x, y[, w])``.
    """
    Trainer._symbolic_build(model, data_batch=data_spec)


__all__ = ["Functional", "LossFunctionWrapper", "functional_init_arguments", "loss_module",
           "symbolic_build"]
