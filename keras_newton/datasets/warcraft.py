"""TFDS builder for the Warcraft shortest-path data set (manual download).

The benchmark of Vlastelica et al. (2020), also used by Petersen et al.
(2021, 2024): 96×96 RGB Warcraft II terrain maps of 12×12 tiles, the hidden
per-tile vertex weights (costs), and the 0/1 mask of the shortest path from
the top-left to the bottom-right tile (8-neighbourhood, vertex weights,
both endpoints counted). The published archive (``warcraft_maps.tar.gz``,
doi:10.17617/3.YJCQ5S) holds, under ``warcraft_shortest_path_oneskin/``, one
folder per grid size ``g`` (``12x12/``, ...) with

``{train,val,test}_maps.npy``            ``N × 8g × 8g × 3`` uint8
``{train,val,test}_shortest_paths.npy``  ``N × g × g`` in {0, 1}
``{train,val,test}_vertex_weights.npy``  ``N × g × g`` float

(``N`` = 10 000 / 1 000 / 1 000). The files are read with
``np.load(..., allow_pickle=False)`` and memory-mapped, so a malformed or
pickled file is refused instead of executed.

Example (after placing the files, see ``MANUAL_DOWNLOAD_INSTRUCTIONS``):
  >>> builder = WarcraftShortestPath(config="12x12", data_dir=data_dir)
  >>> builder.download_and_prepare(
  ...     download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  >>> train = builder.as_dataset(split="train")

References:
  Vlastelica, Paulus, Musil, Martius, Rolínek, "Differentiation of Blackbox
  Combinatorial Solvers", ICLR 2020.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

# Builder split name -> file prefix of the published archive.
SPLIT_FILES = {"train": "train", "validation": "val", "test": "test"}
GRID_SIZES = (12, 18, 24, 30)
TILE_SIZE = 8


@dataclasses.dataclass
class WarcraftShortestPathConfig(tfds.core.BuilderConfig):
    """Config of one grid size; maps are ``8 · grid_size`` pixels wide."""

    grid_size: int = 12


class WarcraftShortestPath(tfds.core.GeneratorBasedBuilder):
    """Warcraft terrain maps with vertex weights and shortest paths."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        WarcraftShortestPathConfig(
            name=f"{size}x{size}",
            grid_size=size,
            description=f"{size}x{size} tiles, {TILE_SIZE * size}px maps.",
        )
        for size in GRID_SIZES
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download `warcraft_maps.tar.gz`, the Warcraft shortest-path data of
    Vlastelica et al. (2020), from https://doi.org/10.17617/3.YJCQ5S (linked
    from https://github.com/martius-lab/blackbox-backprop), and extract it
    (`tar -xzf warcraft_maps.tar.gz`). Point `manual_dir` at the extracted
    folder, at its `warcraft_shortest_path_oneskin/` folder, or directly at
    one grid-size folder such as `12x12/`. That folder must contain
    `{train,val,test}_maps.npy`,
    `{train,val,test}_shortest_paths.npy` and
    `{train,val,test}_vertex_weights.npy`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.grid_size
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=tfds.features.FeaturesDict(
                {
                    "map": tfds.features.Image(
                        shape=(TILE_SIZE * size, TILE_SIZE * size, 3)
                    ),
                    "weights": tfds.features.Tensor(
                        shape=(size, size), dtype=np.float32
                    ),
                    "path": tfds.features.Tensor(
                        shape=(size, size), dtype=np.uint8
                    ),
                }
            ),
            supervised_keys=("map", "path"),
            homepage="https://github.com/martius-lab/blackbox-backprop",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager):
        folder = find_split_folder(
            os.fspath(dl_manager.manual_dir), self.builder_config.grid_size
        )
        return {
            split: self._generate_examples(folder, prefix)
            for split, prefix in SPLIT_FILES.items()
        }

    def _generate_examples(self, folder: str, prefix: str):
        maps, weights, paths = load_split_arrays(
            folder, prefix, self.builder_config.grid_size
        )
        for index in range(maps.shape[0]):
            yield index, {
                "map": np.asarray(maps[index]),
                "weights": np.asarray(weights[index], np.float32),
                "path": np.asarray(paths[index], np.uint8),
            }


def find_split_folder(manual_dir: str, grid_size: int) -> str:
    """Returns the folder of ``manual_dir`` that holds the ``.npy`` files."""
    name = f"{grid_size}x{grid_size}"
    candidates = [
        os.path.join(manual_dir, "warcraft_shortest_path_oneskin", name),
        os.path.join(manual_dir, name),
        manual_dir,
    ]
    for folder in candidates:
        if os.path.exists(os.path.join(folder, "train_maps.npy")):
            return folder
    raise FileNotFoundError(
        f"No Warcraft {name} files (train_maps.npy, ...) under manual_dir "
        f"{manual_dir!r}; looked in {candidates}. "
        + WarcraftShortestPath.MANUAL_DOWNLOAD_INSTRUCTIONS
    )


def load_split_arrays(
    folder: str, prefix: str, grid_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loads and validates ``(maps, weights, paths)`` of one split.

    Raises:
      ValueError: naming the file, when shapes, dtypes, lengths or path values
        are not those of the published archive.
    """
    def load(kind):
        path = os.path.join(folder, f"{prefix}_{kind}.npy")
        try:
            return path, np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as error:  # e.g. a pickled object array
            raise ValueError(f"{path}: {error}") from error

    maps_file, maps = load("maps")
    weights_file, weights = load("vertex_weights")
    paths_file, paths = load("shortest_paths")
    side = TILE_SIZE * grid_size
    if maps.dtype != np.uint8 or maps.shape[1:] != (side, side, 3):
        raise ValueError(
            f"{maps_file}: expected uint8 [N, {side}, {side}, 3], got "
            f"{maps.dtype} {maps.shape}"
        )
    for file, array in ((weights_file, weights), (paths_file, paths)):
        if array.shape != (maps.shape[0], grid_size, grid_size):
            raise ValueError(
                f"{file}: expected shape {(maps.shape[0], grid_size, grid_size)}"
                f" to match {maps_file}, got {array.shape}"
            )
    if not np.issubdtype(weights.dtype, np.number):
        raise ValueError(f"{weights_file}: expected numbers, got {weights.dtype}")
    if not np.all((np.asarray(paths) == 0) | (np.asarray(paths) == 1)):
        raise ValueError(f"{paths_file}: path masks must contain only 0 and 1")
    return maps, weights, paths


_CITATION = """
@inproceedings{vlastelica2020differentiation,
  title={Differentiation of Blackbox Combinatorial Solvers},
  author={Vlastelica, Marin and Paulus, Anselm and Musil, V{\\'\\i}t and
          Martius, Georg and Rol{\\'\\i}nek, Michal},
  booktitle={International Conference on Learning Representations},
  year={2020}
}
"""
