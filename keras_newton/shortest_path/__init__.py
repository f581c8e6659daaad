"""Shortest paths on vertex-weighted grids: exact (XLA) and relaxed (AlgoVision)."""

from keras_newton.shortest_path.exact import shortest_path
from keras_newton.shortest_path.relaxed import relaxed_shortest_path

__all__ = ["shortest_path", "relaxed_shortest_path"]
