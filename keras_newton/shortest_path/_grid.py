"""Grid helpers shared by the exact and the relaxed shortest-path solvers.

Both solvers work on vertex-weighted ``H×W`` grids with the 8-neighbourhood,
source at the top-left cell and target at the bottom-right cell. Neighbour
``k`` of cell ``(i, j)`` is ``(i + dr_k, j + dc_k)`` with the offsets of
:data:`OFFSETS` in row-major order of ``(dr, dc)``; this order is also the
tie-breaking order of the exact solver.

References:
  Petersen et al., "Learning with Algorithmic Supervision via Continuous
  Relaxations", NeurIPS 2021 (arXiv:2110.05651).
"""

from typing import Callable, Tuple

import tensorflow as tf

OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
SUPPORTED_DTYPES = (tf.float32, tf.float64)


def batched_grid(
    costs, name: str = "costs"
) -> Tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """Flattens ``[..., H, W]`` costs to ``[B, H, W]`` and returns an un-flattener.

    Raises:
      TypeError: if the dtype is not float32 or float64.
      ValueError: if the rank is below 2 or ``H``/``W`` are not static.
    """
    costs = tf.convert_to_tensor(costs)
    if costs.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} must be float32 or float64, got dtype {costs.dtype.name}."
        )
    if costs.shape.rank is None or costs.shape.rank < 2:
        raise ValueError(f"{name} must have shape [..., H, W]; got shape {costs.shape}.")
    height, width = costs.shape[-2], costs.shape[-1]
    if height is None or width is None or height < 1 or width < 1:
        raise ValueError(
            f"{name} must have static, non-empty grid axes H and W; got shape "
            f"{costs.shape}."
        )
    leading = tf.shape(costs)[:-2]
    flat = tf.reshape(costs, [-1, height, width])

    def restore(grid: tf.Tensor) -> tf.Tensor:
        return tf.reshape(grid, tf.concat([leading, [height, width]], axis=0))

    return flat, restore


def set_aside_maps(flat: tf.Tensor, unusable: tf.Tensor
                   ) -> Tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    """Solves ``unusable`` maps ``[B]`` as all-zero and returns NaN for them.

    A map with a NaN cost has no shortest path, and inside a batched solve
    its NaN would leak into the others (a ``while`` loop that stops on the
    whole batch never settles). It is replaced by zeros, so the batch is
    solved as if it were not there, and its result is set to NaN at the end
    (so a loss on it is NaN, which :class:`keras_newton.NewtonLoss` leaves
    out).

    Returns:
      ``(costs, finish)``: the costs to solve, and ``path -> path`` with the
      unusable maps set to NaN.
    """
    aside = unusable[:, None, None]
    costs = tf.where(aside, tf.zeros_like(flat), flat)

    def finish(path: tf.Tensor) -> tf.Tensor:
        return tf.where(aside, tf.constant(float("nan"), path.dtype), path)

    return costs, finish


def neighbour_values(grid: tf.Tensor, pad_value) -> tf.Tensor:
    """Values of the 8 neighbours of every cell: ``[B, H, W] -> [B, H, W, 8]``.

    Neighbours outside the grid read ``pad_value``.
    """
    height, width = grid.shape[-2], grid.shape[-1]
    padded = tf.pad(grid, [[0, 0], [1, 1], [1, 1]], constant_values=pad_value)
    return tf.stack(
        [
            padded[:, 1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]
            for dr, dc in OFFSETS
        ],
        axis=-1,
    )


def move_to_neighbours(mass: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Sends ``mass * weights[..., k]`` from every cell to its neighbour ``k``.

    Args:
      mass: ``[B, H, W]``.
      weights: ``[B, H, W, 8]``, the share of each cell's mass moving to each
        neighbour. Mass sent outside the grid is dropped.

    Returns:
      ``[B, H, W]``: the mass arriving at every cell.
    """
    height, width = mass.shape[-2], mass.shape[-1]
    moved = tf.pad(mass[..., None] * weights, [[0, 0], [1, 1], [1, 1], [0, 0]])
    # Cell (i, j) receives from (i - dr, j - dc) along offset k = (dr, dc).
    return tf.add_n(
        [
            moved[:, 1 - dr : 1 - dr + height, 1 - dc : 1 - dc + width, k]
            for k, (dr, dc) in enumerate(OFFSETS)
        ]
    )


def corner_masks(height: int, width: int, dtype) -> Tuple[tf.Tensor, tf.Tensor]:
    """One-hot ``[H, W]`` masks of the source (top-left) and target (bottom-right)."""
    flat_source = tf.one_hot(0, height * width, dtype=dtype)
    flat_target = tf.one_hot(height * width - 1, height * width, dtype=dtype)
    return (
        tf.reshape(flat_source, [height, width]),
        tf.reshape(flat_target, [height, width]),
    )
