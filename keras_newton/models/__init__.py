"""Keras models of the paper's benchmarks, as functions returning ``keras.Model``.

All are functional models of built-in layers, so ``model.save(...)`` and
``keras.saving.load_model(...)`` round-trip them without custom objects.
"""

from keras_newton.models.classification_models import (
    MODEL_SPECS,
    classification_model,
    lenet5,
    mlp_classifier,
)
from keras_newton.models.four_digit_cnn import four_digit_cnn, four_digit_scorer
from keras_newton.models.four_digit_mlp import four_digit_mlp
from keras_newton.models.warcraft_resnet import warcraft_resnet

__all__ = [
    "MODEL_SPECS",
    "classification_model",
    "four_digit_cnn",
    "four_digit_mlp",
    "four_digit_scorer",
    "lenet5",
    "mlp_classifier",
    "warcraft_resnet",
]
