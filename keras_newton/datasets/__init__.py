"""Data for the paper's benchmarks: number sets, terrain maps, classification.

Offline defaults run with no network: scikit-learn's bundled 8×8 digits for
the ranking and classification sets, generated terrain for shortest paths.
The TFDS-backed sources (MNIST, CIFAR-10, the Warcraft archive) keep their
real loading code and are used only when asked for.

Importing this package does no data work and does not import
``tensorflow_datasets``: the TFDS builders (``WarcraftShortestPath``,
``SyntheticTerrain``, ...) are loaded on first attribute access.
"""

import importlib

from keras_newton.datasets.classification import (
    classification_dataset,
    load_classification,
)
from keras_newton.datasets.multi_digit import (
    compose_numbers,
    multi_digit_arrays,
    multi_digit_dataset,
)
from keras_newton.datasets.shortest_path_data import (
    prepare_shortest_path_builder,
    shortest_path_dataset,
)
from keras_newton.datasets.sources import load_image_source
from keras_newton.datasets.terrain import (
    TERRAIN_COSTS,
    make_terrain_arrays,
    make_terrain_maps,
)

# Names whose modules import TFDS, resolved lazily (PEP 562).
_LAZY = {
    "WarcraftShortestPath": "keras_newton.datasets.warcraft",
    "WarcraftShortestPathConfig": "keras_newton.datasets.warcraft",
    "SyntheticTerrain": "keras_newton.datasets.synthetic_terrain",
    "SyntheticTerrainConfig": "keras_newton.datasets.synthetic_terrain",
    "synthetic_terrain_builder": "keras_newton.datasets.synthetic_terrain",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TERRAIN_COSTS",
    "classification_dataset",
    "compose_numbers",
    "load_classification",
    "load_image_source",
    "make_terrain_arrays",
    "make_terrain_maps",
    "multi_digit_arrays",
    "multi_digit_dataset",
    "prepare_shortest_path_builder",
    "shortest_path_dataset",
    *_LAZY,
]
