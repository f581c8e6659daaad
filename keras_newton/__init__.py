"""keras_newton: Newton losses and differentiable algorithms for Keras 3.

Implements Petersen et al., "Newton Losses: Using Curvature Information for
Learning with Differentiable Algorithms", NeurIPS 2024 (arXiv:2410.19055).
"""

import importlib

# The benchmark CLI fixes the numerics before TensorFlow loads (the imports
# below load it); a library user's process is left alone.
from keras_newton.bench import portable_numerics as _portable_numerics
from keras_newton.bench import quiet_start as _quiet_start

_portable_numerics.configure_if_launched()
# ... and loads TensorFlow without its C++ start-up logs (unless the user set
# TF_CPP_MIN_LOG_LEVEL).
_quiet_start.import_tensorflow_if_launched()

from keras_newton import _deprecation

# Old module paths (keras_newton.newton.autodiff, ...) resolve, with a warning.
_deprecation.install_module_aliases()

from keras_newton import newton  # noqa: E402
from keras_newton.newton import (
    CURVATURES,
    CurvatureCache,
    NewtonLoss,
    NewtonLossModel,
    NewtonStep,
    newton_target,
)

# Imported eagerly so that every serializable loss and metric is registered
# with Keras before a saved model is loaded.
from keras_newton import distribute
from keras_newton import losses
from keras_newton import metrics
from keras_newton import shortest_path
from keras_newton import smoothing
from keras_newton import sorting

__version__ = "0.1.0"

# Data sets (TFDS), models and the benchmark CLI load on first access, so
# `import keras_newton` does no dataset work.
_LAZY_SUBMODULES = ("bench", "datasets", "models")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"keras_newton.{name}")
    raise AttributeError(f"module 'keras_newton' has no attribute {name!r}")


__all__ = [
    "CURVATURES",
    "CurvatureCache",
    "NewtonLoss",
    "NewtonLossModel",
    "NewtonStep",
    "newton",
    "newton_target",
    "distribute",
    "losses",
    "metrics",
    "shortest_path",
    "smoothing",
    "sorting",
    *_LAZY_SUBMODULES,
]
