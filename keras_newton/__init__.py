"""keras_newton: Newton losses and differentiable algorithms for Keras 3.

Implements Petersen et al., "Newton Losses: Using Curvature Information for
Learning with Differentiable Algorithms", NeurIPS 2024 (arXiv:2410.19055).
"""

from keras_newton.curvature import CURVATURES
from keras_newton.newton_loss import NewtonLoss
from keras_newton.newton_loss_model import NewtonLossModel
from keras_newton.newton_target import newton_target

__version__ = "0.1.0"
