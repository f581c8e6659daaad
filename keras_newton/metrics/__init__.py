"""Keras metrics of keras_newton."""
from keras_newton.metrics.ranking_metrics import ElementwiseRankAccuracy
from keras_newton.metrics.ranking_metrics import OrderingExactMatch
from keras_newton.metrics.path_metrics import CostRatio
from keras_newton.metrics.path_metrics import PerfectMatch

__all__ = ["CostRatio", "ElementwiseRankAccuracy", "OrderingExactMatch", "PerfectMatch"]
