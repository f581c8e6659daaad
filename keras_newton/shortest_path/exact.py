"""Exact vertex-weighted shortest paths on grids, TF-native and XLA-compilable.

The Warcraft shortest-path benchmark (Vlastelica et al., 2020) asks for the
cheapest 8-connected path from the top-left to the bottom-right cell of a
cost map, where a path costs the sum of the costs of all its cells, both
endpoints included. This module solves it with min-plus (Bellman-Ford)
iterations and a traceback, written with tensor ops only, so it runs batched
inside one XLA computation (no Python heap, no ``numpy_function``).

Ties are resolved deterministically: each cell carries the lexicographic label
``(cost, vertices)`` of its best path, so among equally cheap paths the one
with the fewest cells wins; the traceback from the target then moves to the
neighbour with the smallest label, and among neighbours with equal labels to
the first one in row-major order of the offset ``(dr, dc)``
(:data:`keras_newton.shortest_path.grid.OFFSETS`).

References:
  Bellman, "On a routing problem", Quarterly of Applied Mathematics, 1958.
  Vlastelica et al., "Differentiation of Blackbox Combinatorial Solvers",
  ICLR 2020 (the Warcraft shortest-path setting).
"""

import tensorflow as tf

from keras_newton.shortest_path import _grid as grid


def _relax(costs, source, distance, hops, hop_cap):
    """One Jacobi min-plus sweep on the lexicographic ``(distance, hops)`` labels."""
    inf = tf.constant(float("inf"), costs.dtype)
    neighbour_distance = grid.neighbour_values(distance, inf)
    neighbour_hops = grid.neighbour_values(hops, hop_cap)
    best, best_hops, _ = _best_neighbour(neighbour_distance, neighbour_hops, hop_cap)
    new_distance = tf.where(source, costs, best + costs)
    new_hops = tf.where(source, tf.zeros_like(hops), tf.minimum(best_hops + 1, hop_cap))
    return new_distance, new_hops


def _best_neighbour(neighbour_distance, neighbour_hops, hop_cap):
    """Lexicographic minimum over the 8 neighbours and the first index reaching it."""
    best = tf.reduce_min(neighbour_distance, axis=-1)
    is_best = tf.equal(neighbour_distance, best[..., None])
    best_hops = tf.reduce_min(
        tf.where(is_best, neighbour_hops, tf.fill(tf.shape(neighbour_hops), hop_cap)),
        axis=-1,
    )
    is_best = tf.logical_and(is_best, tf.equal(neighbour_hops, best_hops[..., None]))
    index = tf.reduce_min(
        tf.where(is_best, tf.range(8), tf.fill(tf.shape(neighbour_hops), 8)), axis=-1
    )
    return best, best_hops, index


def shortest_path(costs, max_iterations=None) -> tf.Tensor:
    """Exact shortest path mask on vertex-weighted ``H×W`` grids (8-neighbourhood).

    Solves, for every grid of the batch,

    .. math::

        \\pi^\\star = \\arg\\min_{\\pi:\\,(0,0)\\to(H-1,W-1)}
                      \\sum_{v \\in \\pi} c_v ,

    over 8-connected paths ``π`` from the top-left to the bottom-right cell,
    counting the costs of both endpoints, and returns the 0/1 indicator of
    the cells of ``π*``. Distances come from Bellman-Ford sweeps
    ``d_v ← c_v + min_{u ∈ N(v)} d_u`` run in a ``tf.while_loop`` until no
    label changes (at most ``H·W`` sweeps), then a traceback follows the
    predecessors from the target. Ties are broken as described in the module
    docstring (fewest cells, then the first neighbour in row-major offset
    order), so the result is deterministic.

    Negative costs are clipped to zero first: on an undirected grid a
    negative cell would make path costs unbounded below (so ``-inf`` counts
    as 0). A ``+inf`` cell is a wall: the path avoids it wherever a path of
    finite cost exists. A map with a NaN cost has no shortest path: its
    whole mask is NaN (in eager, ``tf.function`` and XLA alike, so a loss
    on it is NaN and :class:`keras_newton.NewtonLoss` leaves that sample
    out), and the other maps of the batch are unaffected. The output
    carries no gradient (it is piecewise constant).

    Example:

    >>> import tensorflow as tf
    >>> from keras_newton.shortest_path import shortest_path
    >>> costs = tf.constant([[1., 9., 9.], [1., 9., 9.], [9., 1., 1.]])
    >>> shortest_path(costs).numpy()
    array([[1., 0., 0.],
           [1., 0., 0.],
           [0., 1., 1.]], dtype=float32)

    Args:
      costs: ``[..., H, W]`` float32/float64 cell costs (any leading dims).
      max_iterations: optional cap on the Bellman-Ford sweeps; ``None`` uses
        ``H·W``, which always suffices.

    Returns:
      ``[..., H, W]`` tensor of 0/1 path indicators in the dtype of ``costs``.
    """
    flat, restore = grid.batched_grid(costs)
    height, width = flat.shape[-2], flat.shape[-1]
    cells = height * width
    if max_iterations is None:
        max_iterations = cells
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive int, got {max_iterations!r}.")

    # NaN labels never compare equal, so a NaN map would neither settle nor
    # trace back consistently (and differently in eager and XLA).
    flat, finish = grid.set_aside_maps(
        tf.stop_gradient(flat), tf.reduce_any(tf.math.is_nan(flat), axis=[-2, -1]))
    flat = tf.maximum(flat, tf.zeros([], flat.dtype))
    source_float, target_float = grid.corner_masks(height, width, flat.dtype)
    source = tf.broadcast_to(tf.cast(source_float, tf.bool), tf.shape(flat))
    hop_cap = tf.constant(cells, tf.int32)
    distance = tf.where(source, flat, tf.fill(tf.shape(flat), tf.constant(float("inf"), flat.dtype)))
    hops = tf.where(source, 0, tf.fill(tf.shape(flat), hop_cap))

    def sweep(changed, distance, hops):
        new_distance, new_hops = _relax(flat, source, distance, hops, hop_cap)
        changed = tf.reduce_any(
            tf.logical_or(
                tf.not_equal(new_distance, distance), tf.not_equal(new_hops, hops)
            )
        )
        return changed, new_distance, new_hops

    _, distance, hops = tf.while_loop(
        lambda changed, *_: changed,
        sweep,
        (tf.constant(True), distance, hops),
        maximum_iterations=max_iterations,
    )

    inf = tf.constant(float("inf"), flat.dtype)
    _, _, index = _best_neighbour(
        grid.neighbour_values(distance, inf), grid.neighbour_values(hops, hop_cap), hop_cap
    )
    # Mass parked at the source stays there; everywhere else it moves to the
    # chosen predecessor, so after hops[target] steps the walk has ended.
    stay = 1.0 - source_float
    pointer = tf.one_hot(index, 8, dtype=flat.dtype) * stay[..., None]
    position = tf.broadcast_to(target_float, tf.shape(flat))
    steps = tf.reduce_max(hops[:, -1, -1])

    def step(i, position, path):
        position = grid.move_to_neighbours(position, pointer) + position * source_float
        return i + 1, position, tf.maximum(path, position)

    _, _, path = tf.while_loop(
        lambda i, *_: i < steps,
        step,
        (tf.constant(0, tf.int32), position, position),
        maximum_iterations=cells,
    )
    return restore(finish(path))
