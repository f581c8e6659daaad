"""Warcraft-like synthetic terrain maps with exact shortest paths (NumPy).

The offline stand-in for the Warcraft shortest-path benchmark (Vlastelica et
al., 2020): a ``g × g`` grid (``g = 12``) of textured ``t × t`` tiles
(``t = 8``, so 96×96 RGB maps) drawn from five terrain classes whose costs are
the published Warcraft vertex weights::

    class     road  grass  forest  hills  mountain
    cost      0.8   1.2    5.3     7.7    9.2

Every map varies so that a network has to read the image, not memorise a
layout:

* **Spatially coherent terrain.** Each class ``c`` gets a smooth random field
  ``f_c`` (Gaussian noise on a coarse ``r × r`` lattice, bilinearly upsampled
  to ``g × g``, plus a little cell noise) and a per-map prevalence offset
  ``b_c``; a cell's class is ``argmax_c (f_c + b_c)``, giving connected
  patches of varying size and mix.
* **Texture.** Each class has its own tile texture (speckled grass, tree
  crowns, ridges, rocky peaks, ...) with random placement and phase per tile,
  plus pixel noise.
* **Cost jitter.** Per map, each class' cost is scaled by ``1 + δ_c`` with
  ``δ_c ~ U(-j, j)`` (``j = cost_jitter``), and the class' colour is darkened
  by the factor ``1 - 1.5 δ_c``: the jitter is visible, so the cost map stays
  a function of the image.

The true path is the exact vertex-weighted shortest path (8-neighbourhood,
top-left to bottom-right, both endpoints counted) from
``keras_newton.shortest_path.shortest_path``. Map ``i`` of a stream with seed
``s`` is generated from ``numpy.random.default_rng([*s, i])`` alone, so any
slice of a stream can be regenerated independently.

References:
  Vlastelica, Paulus, Musil, Martius, Rolínek, "Differentiation of Blackbox
  Combinatorial Solvers", ICLR 2020.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

TERRAIN_NAMES = ("road", "grass", "forest", "hills", "mountain")
TERRAIN_COSTS = (0.8, 1.2, 5.3, 7.7, 9.2)
# RGB base colours in [0, 1].
TERRAIN_COLORS = np.array(
    [
        [0.80, 0.70, 0.48],  # road: sand
        [0.38, 0.66, 0.26],  # grass
        [0.16, 0.42, 0.18],  # forest
        [0.55, 0.42, 0.28],  # hills
        [0.52, 0.52, 0.55],  # mountain
    ],
    np.float32,
)
# Mean prevalence offsets b_c: cheap terrain is common, mountains are rare.
_PREVALENCE = np.array([0.1, 0.5, 0.3, 0.0, -0.2])


def _seed_words(seed: int | Sequence[int]) -> list[int]:
    words = [seed] if np.isscalar(seed) else list(seed)
    for word in words:
        if isinstance(word, bool) or not isinstance(word, (int, np.integer)):
            raise TypeError(f"seed must be an int or ints, got {seed!r}")
        if word < 0:
            raise ValueError(f"seed must be non-negative, got {seed!r}")
    return [int(word) for word in words]


def _upsample_matrix(coarse: int, fine: int) -> np.ndarray:
    """``[fine, coarse]`` bilinear interpolation weights (corners aligned)."""
    position = np.linspace(0.0, coarse - 1.0, fine)
    return np.maximum(0.0, 1.0 - np.abs(position[:, None] - np.arange(coarse)))


def _terrain_classes(rng: np.random.Generator, grid_size: int) -> np.ndarray:
    """``[g, g]`` class ids from smooth per-class fields (see module doc)."""
    coarse = max(2, grid_size // 3)
    upsample = _upsample_matrix(coarse, grid_size)
    num_classes = len(TERRAIN_COSTS)
    lattice = rng.normal(size=(num_classes, coarse, coarse))
    fields = upsample @ lattice @ upsample.T
    fields += 0.3 * rng.normal(size=fields.shape)
    offsets = _PREVALENCE + 0.4 * rng.normal(size=num_classes)
    return np.argmax(fields + offsets[:, None, None], axis=0)


def _texture(rng, terrain: int, count: int, tile: int) -> np.ndarray:
    """``[count, tile, tile]`` luminance modulation for one terrain class."""
    yy, xx = np.meshgrid(
        (np.arange(tile) + 0.5) / tile, (np.arange(tile) + 0.5) / tile,
        indexing="ij",
    )
    noise = rng.normal(size=(count, tile, tile))
    if terrain == 0:  # road: smooth, a faint rut along a random axis
        axis_x = rng.random(count)[:, None, None] < 0.5
        rut = np.where(axis_x, np.abs(xx - 0.5), np.abs(yy - 0.5)) < 0.12
        return 0.06 * noise - 0.12 * rut
    if terrain == 1:  # grass: bright blades on a noisy lawn
        blades = rng.random((count, tile, tile)) < 0.2
        return 0.12 * noise + 0.3 * blades
    if terrain == 2:  # forest: two or three dark tree crowns
        crowns = np.zeros((count, tile, tile))
        for _ in range(3):
            cy, cx = rng.random((2, count, 1, 1))
            dist2 = (yy - cy) ** 2 + (xx - cx) ** 2
            crowns = np.maximum(crowns, np.exp(-dist2 / (2 * 0.15**2)))
        return 0.1 * noise - 0.55 * crowns + 0.2
    if terrain == 3:  # hills: diagonal ridges with random phase
        phase = rng.random((count, 1, 1)) * 2 * np.pi
        return 0.08 * noise + 0.3 * np.sin(2 * np.pi * 1.5 * (xx + yy) + phase)
    # mountain: rocky noise under a bright snow-capped peak
    peak = (yy < 0.55 - 1.2 * np.abs(xx - 0.5)) & (yy > 0.05)
    return 0.25 * noise + 0.6 * peak


def _render(rng, classes: np.ndarray, shade: np.ndarray, tile: int) -> np.ndarray:
    """``[g·t, g·t, 3]`` uint8 image of the class grid."""
    grid = classes.shape[0]
    flat = classes.reshape(-1)
    luminance = np.zeros((flat.size, tile, tile))
    for terrain in range(len(TERRAIN_COSTS)):
        cells = np.flatnonzero(flat == terrain)
        if cells.size:
            luminance[cells] = _texture(rng, terrain, cells.size, tile)
    colors = TERRAIN_COLORS[flat] * shade[flat, None]  # [g·g, 3]
    tiles = colors[:, None, None, :] * (1.0 + luminance[..., None])
    tiles += 0.02 * rng.normal(size=tiles.shape)
    image = tiles.reshape(grid, grid, tile, tile, 3).transpose(0, 2, 1, 3, 4)
    image = image.reshape(grid * tile, grid * tile, 3)
    return np.clip(np.round(255.0 * image), 0, 255).astype(np.uint8)


def make_terrain_maps(
    num_maps: int,
    seed: int | Sequence[int] = 0,
    *,
    grid_size: int = 12,
    tile_size: int = 8,
    cost_jitter: float = 0.1,
    first_index: int = 0,
) -> dict[str, np.ndarray]:
    """Terrain images and their cost maps, without paths.

    Args:
      num_maps: number of maps ``N``.
      seed: non-negative int or ints; the stream's seed.
      grid_size: cells per side ``g``.
      tile_size: pixels per cell side ``t``.
      cost_jitter: relative per-map cost jitter ``j`` in [0, 0.3].
      first_index: index of the first map in the stream (for slicing).

    Returns:
      ``{"map": uint8 [N, g·t, g·t, 3], "weights": float32 [N, g, g],
      "terrain": uint8 [N, g, g]}``.
    """
    words = _seed_words(seed)
    for name, value, low in (
        ("num_maps", num_maps, 0), ("grid_size", grid_size, 2),
        ("tile_size", tile_size, 2), ("first_index", first_index, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if not 0.0 <= cost_jitter <= 0.3:
        raise ValueError(f"cost_jitter must be in [0, 0.3], got {cost_jitter}")
    side = grid_size * tile_size
    maps = np.zeros((num_maps, side, side, 3), np.uint8)
    weights = np.zeros((num_maps, grid_size, grid_size), np.float32)
    terrain = np.zeros((num_maps, grid_size, grid_size), np.uint8)
    costs = np.asarray(TERRAIN_COSTS)
    for i in range(num_maps):
        rng = np.random.default_rng(words + [first_index + i])
        classes = _terrain_classes(rng, grid_size)
        jitter = rng.uniform(-cost_jitter, cost_jitter, size=costs.size)
        maps[i] = _render(rng, classes, 1.0 - 1.5 * jitter, tile_size)
        weights[i] = (costs * (1.0 + jitter))[classes]
        terrain[i] = classes
    return {"map": maps, "weights": weights, "terrain": terrain}


def make_terrain_arrays(
    num_maps: int,
    seed: int | Sequence[int] = 0,
    *,
    grid_size: int = 12,
    tile_size: int = 8,
    cost_jitter: float = 0.1,
    first_index: int = 0,
    solver_batch_size: int = 512,
) -> dict[str, np.ndarray]:
    """Terrain maps with their true shortest paths, as NumPy arrays.

    Args:
      num_maps: as in :func:`make_terrain_maps`, and so are ``seed``,
        ``grid_size``, ``tile_size``, ``cost_jitter`` and ``first_index``.
      solver_batch_size: maps per call of the exact solver.

    Returns:
      ``make_terrain_maps``' arrays plus ``"path"``: uint8 ``[N, g, g]``, the
      0/1 mask of the exact shortest path from the top-left to the
      bottom-right cell.

    Example:
      >>> data = make_terrain_arrays(4, seed=0)
      >>> data["map"].shape, data["weights"].shape, data["path"].shape
      ((4, 96, 96, 3), (4, 12, 12), (4, 12, 12))
    """
    data = make_terrain_maps(
        num_maps, seed, grid_size=grid_size, tile_size=tile_size,
        cost_jitter=cost_jitter, first_index=first_index,
    )
    data["path"] = solve_paths(data["weights"], solver_batch_size)
    return data


_COMPILED_SOLVER = []  # One XLA-compiled solver, created on first use.


def solve_paths(weights: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Exact shortest-path masks ``uint8 [N, g, g]`` of costs ``[N, g, g]``.

    Runs ``keras_newton.shortest_path.shortest_path`` under XLA on batches of
    one fixed size (short ones padded with unit costs), so it compiles once
    per grid size and batch size, whatever the number of maps.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"solver_batch_size must be a positive int, got {batch_size!r}")
    weights = np.asarray(weights, np.float32)
    num_maps = weights.shape[0]
    if num_maps == 0:
        return np.zeros(weights.shape, np.uint8)
    if not _COMPILED_SOLVER:
        # Lazy: TensorFlow and the solver are only needed for paths.
        import tensorflow as tf

        from keras_newton.shortest_path import shortest_path

        _COMPILED_SOLVER.append(tf.function(shortest_path, jit_compile=True))
    solver = _COMPILED_SOLVER[0]
    paths = []
    for start in range(0, num_maps, batch_size):
        chunk = weights[start:start + batch_size]
        padding = batch_size - chunk.shape[0]
        padded = np.concatenate([chunk, np.ones((padding,) + chunk.shape[1:], np.float32)])
        paths.append(np.asarray(solver(padded))[: chunk.shape[0]])
    return np.concatenate(paths).astype(np.uint8)
