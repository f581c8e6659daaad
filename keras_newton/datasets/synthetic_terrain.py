"""TFDS builder for synthetic Warcraft-like terrain: the offline path data.

Wraps :func:`keras_newton.datasets.terrain.make_terrain_arrays` (which
documents the generator) as a TFDS ``GeneratorBasedBuilder`` with the same
features as :class:`keras_newton.datasets.warcraft.WarcraftShortestPath`
(``map``, ``weights``, ``path``), so every pipeline and benchmark runs on
either. Nothing is downloaded: ``download_and_prepare`` generates the maps,
deterministically from the config's seed, and the split ``s`` (0 = train,
1 = validation, 2 = test) is the terrain stream with seed ``(seed, s)``.

Sizes come from the config: pick a predefined one (``"small"``: 2000 / 200 /
500 maps, ``"warcraft_size"``: 10 000 / 1 000 / 1 000 like the published
data) or build any other with :func:`synthetic_terrain_builder`.

Example:
  >>> builder = synthetic_terrain_builder(
  ...     data_dir, num_train=64, num_validation=16, num_test=16)
  >>> builder.download_and_prepare()
  >>> example = next(iter(builder.as_dataset(split="train")))
  >>> example["map"].shape, example["path"].shape
  (TensorShape([96, 96, 3]), TensorShape([12, 12]))
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from keras_newton.datasets.terrain import make_terrain_arrays

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
_CHUNK = 500  # Maps generated (and solved) per call while writing a split.


@dataclasses.dataclass(eq=False)
class SyntheticTerrainConfig(tfds.core.BuilderConfig):
    """Sizes and seed of one synthetic terrain data set."""

    grid_size: int = 12
    tile_size: int = 8
    num_train: int = 2000
    num_validation: int = 200
    num_test: int = 500
    cost_jitter: float = 0.1
    seed: int = 0

    def __post_init__(self):
        for field in ("grid_size", "tile_size"):
            if getattr(self, field) < 2:
                raise ValueError(f"{field} must be >= 2, got {getattr(self, field)}")
        for field in ("num_train", "num_validation", "num_test", "seed"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        if not 0.0 <= self.cost_jitter <= 0.3:
            raise ValueError(f"cost_jitter must be in [0, 0.3], got {self.cost_jitter}")

    def generator_args(self) -> tuple:
        """Every field that changes the generated data."""
        return (
            self.grid_size, self.tile_size, self.num_train, self.num_validation,
            self.num_test, self.cost_jitter, self.seed,
        )

    def split_sizes(self) -> dict[str, int]:
        return {
            "train": self.num_train,
            "validation": self.num_validation,
            "test": self.num_test,
        }


class SyntheticTerrain(tfds.core.GeneratorBasedBuilder):
    """Synthetic Warcraft-like terrain maps with exact shortest paths."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticTerrainConfig(
            name="small", description="2000/200/500 maps of 12x12 tiles."
        ),
        SyntheticTerrainConfig(
            name="warcraft_size",
            num_train=10000,
            num_validation=1000,
            num_test=1000,
            description="10000/1000/1000 maps, the Warcraft split sizes.",
        ),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        side = config.grid_size * config.tile_size
        cells = (config.grid_size, config.grid_size)
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict(
                {
                    "map": tfds.features.Image(shape=(side, side, 3)),
                    "weights": tfds.features.Tensor(shape=cells, dtype=np.float32),
                    "path": tfds.features.Tensor(shape=cells, dtype=np.uint8),
                }
            ),
            supervised_keys=("map", "path"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated locally; nothing to download.
        return {
            split: self._generate_examples(split, size)
            for split, size in self.builder_config.split_sizes().items()
        }

    def _generate_examples(self, split: str, size: int):
        config = self.builder_config
        for start in range(0, size, _CHUNK):
            arrays = make_terrain_arrays(
                min(_CHUNK, size - start),
                (config.seed, SPLIT_IDS[split]),
                grid_size=config.grid_size,
                tile_size=config.tile_size,
                cost_jitter=config.cost_jitter,
                first_index=start,
            )
            for offset in range(arrays["map"].shape[0]):
                yield start + offset, {
                    key: arrays[key][offset] for key in ("map", "weights", "path")
                }


def synthetic_terrain_builder(
    data_dir: str | None = None,
    *,
    num_train: int = 2000,
    num_validation: int = 200,
    num_test: int = 500,
    grid_size: int = 12,
    tile_size: int = 8,
    cost_jitter: float = 0.1,
    seed: int = 0,
) -> SyntheticTerrain:
    """A :class:`SyntheticTerrain` builder for any sizes and seed.

    Uses a predefined config when the arguments match one; otherwise a config
    whose name encodes every argument, so different data never share a
    directory under ``data_dir``. Call ``download_and_prepare()`` on the
    result to generate the data.
    """
    config = SyntheticTerrainConfig(
        name="custom",
        grid_size=grid_size,
        tile_size=tile_size,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        cost_jitter=cost_jitter,
        seed=seed,
    )
    for predefined in SyntheticTerrain.BUILDER_CONFIGS:
        if predefined.generator_args() == config.generator_args():
            return SyntheticTerrain(data_dir=data_dir, config=predefined.name)
    config.name = (
        f"g{grid_size}_t{tile_size}_n{num_train}-{num_validation}-{num_test}"
        f"_j{round(cost_jitter * 1000)}_s{seed}"
    )
    config.description = "Custom sizes."
    return SyntheticTerrain(data_dir=data_dir, config=config)
