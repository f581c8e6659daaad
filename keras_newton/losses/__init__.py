"""Keras losses of keras_newton."""
from keras_newton.losses.sorting_loss import SortingLoss
from keras_newton.losses.fenchel_young_loss import FenchelYoungLoss
from keras_newton.losses.shortest_path_loss import ShortestPathLoss
from keras_newton.losses.smoothed_loss import SmoothedLoss

__all__ = ["FenchelYoungLoss", "ShortestPathLoss", "SmoothedLoss", "SortingLoss"]
