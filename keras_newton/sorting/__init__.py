"""Differentiable sorting: NeuralSort, SoftSort and sorting networks.

All sorters return ``(sorted_x, P)`` in one convention: ascending order,
``P[..., i, j]`` = mass of input ``i`` at sorted position ``j``, and
``sorted_x = einsum("...i,...ij->...j", x, P)``.

Scores up to the float limit (about ``3e38`` in float32) give finite
results in every sorter. A row with a ``±inf`` or NaN score gives NaN
``sorted_x`` and ``P`` for that row (``inf - inf`` has no value), and
only for that row: the other rows of the batch are unaffected.
"""

from keras_newton.sorting.diff_sort import diff_sort
from keras_newton.sorting.networks import NETWORKS
from keras_newton.sorting.networks import network_plan
from keras_newton.sorting.neural_sort import neural_sort
from keras_newton.sorting.permutations import TIES
from keras_newton.sorting.permutations import permutation_matrix
from keras_newton.sorting.permutations import stable_ranks
from keras_newton.sorting.relaxations import MONOTONIC_RELAXATIONS
from keras_newton.sorting.relaxations import RELAXATIONS
from keras_newton.sorting.soft_sort import soft_sort

SORTERS = {"diff_sort": diff_sort, "neural_sort": neural_sort, "soft_sort": soft_sort}

__all__ = [
    "MONOTONIC_RELAXATIONS",
    "NETWORKS",
    "RELAXATIONS",
    "SORTERS",
    "TIES",
    "diff_sort",
    "network_plan",
    "neural_sort",
    "permutation_matrix",
    "soft_sort",
    "stable_ranks",
]
