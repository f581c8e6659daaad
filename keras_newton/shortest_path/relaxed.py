"""Relaxed (AlgoVision) Bellman-Ford shortest path on grids.

The continuous relaxation of Petersen et al. (2021): Bellman-Ford with the
hard minimum replaced by a softmin at inverse temperature ``β``, followed by
a soft traceback that moves probability mass to the predecessors and
accumulates it into a path with a t-conorm. It is smoothly differentiable in
the costs and, for ``β → ∞`` with enough iterations, recovers the exact path.

References:
  Petersen, Borgelt, Kuehne & Deussen, "Learning with Algorithmic
  Supervision via Continuous Relaxations", NeurIPS 2021 (arXiv:2110.05651).
"""

from typing import Optional

import numpy as np
import tensorflow as tf

from keras_newton._validation import finite_number, int_at_least, one_of
from keras_newton.shortest_path import _grid as grid
from keras_newton.shortest_path._t_conorms import t_conorm_fn

LOOPS = ("for", "while")
# The "infinite" distance of unreached and out-of-grid cells.
INFINITY = 1e12


def validate_relaxed_args(beta, n_iter, loop, max_iter, epsilon):
    """Checks the options of :func:`relaxed_shortest_path`; raises on bad values."""
    beta = finite_number(beta, "beta")
    int_at_least(n_iter, "n_iter", allow_none=True)
    one_of(loop, LOOPS, "loop")
    int_at_least(max_iter, "max_iter")
    epsilon = finite_number(epsilon, "epsilon")
    return beta, epsilon


# Neighbours whose β-scaled distance above the nearest one exceeds this have
# softmin weight exactly 0 in float32 and float64 (exp(-1e4) underflows).
NEGLIGIBLE = 1e4


def _softmin(distance, pad, beta):
    """Softmin over the 8 neighbours: ``(Σ_k w_k u_k, w)`` with ``w = softmax(-β u)``.

    Computed as ``min u + Σ_k w_k (u_k - min u)`` (equal, since ``Σ w = 1``)
    over the neighbours that are not negligible: those ``β(u_k - min u) >
    10⁴`` above the nearest (unreached or out-of-grid cells, ``u ~ 10¹²``)
    have weight exactly 0 in float32 and float64 either way, but their
    ``10¹²`` gaps would enter second derivatives as ``β²(u - d)² w ~ 10²⁶ · 0``
    and overflow float32 to ``inf · 0 = NaN``.
    """
    neighbours = grid.neighbour_values(distance, pad)
    nearest = tf.reduce_min(neighbours, -1, keepdims=True)
    # Shift by the nearest neighbour before scaling: softmax is shift
    # invariant, and XLA's fused -β·u - max(-β·u) loses all precision at
    # |u| ~ 1e12 (it returned NaN for all-out-of-grid neighbourhoods).
    shifted = neighbours - tf.stop_gradient(nearest)
    negligible = tf.stop_gradient(beta * shifted) > NEGLIGIBLE
    far = tf.fill(tf.shape(shifted), tf.constant(2 * NEGLIGIBLE / beta, shifted.dtype))
    weights = tf.nn.softmax(-beta * tf.where(negligible, far, shifted), axis=-1)
    gaps = tf.where(negligible, tf.zeros_like(shifted), neighbours - nearest)
    return nearest[..., 0] + tf.reduce_sum(weights * gaps, axis=-1), weights


def _repeat(body, state, count: int, unroll: bool):
    """Applies ``body`` to the tuple ``state`` ``count`` times.

    Unrolled in Python when ``unroll``: second derivatives (batch_jacobian of
    the gradient, vectorized by pfor) of a tf.while_loop fail under XLA.
    Otherwise one tf.while_loop, which XLA compiles in seconds instead of
    minutes for large ``count`` (first derivatives only under XLA).
    """
    if unroll:
        for _ in range(count):
            state = body(*state)
        return state
    if count == 0:
        return state
    _, *state = tf.while_loop(
        lambda i, *_: i < count,
        lambda i, *state: (i + 1, *body(*state)),
        (tf.constant(0, tf.int32), *state),
        maximum_iterations=count,
    )
    return tuple(state)


def _forward(costs, source, beta, n_iter, absorbing_source, unroll):
    """``n_iter`` softmin Bellman-Ford sweeps; returns the last predecessor weights."""
    pad = tf.constant(INFINITY, costs.dtype)

    def sweep(distance):
        expected, _ = _softmin(distance, pad, beta)
        distance = expected + costs
        return (tf.where(source, tf.zeros_like(distance), distance),)

    distance = tf.where(source, tf.zeros_like(costs), tf.fill(tf.shape(costs), pad))
    # The weights of sweep n_iter are those of the distances after n_iter - 1.
    (distance,) = _repeat(sweep, (distance,), n_iter - 1, unroll)
    _, weights = _softmin(distance, pad, beta)
    if absorbing_source:
        # The source has no predecessor: mass that reaches it leaves the grid.
        weights = tf.where(source[..., None], tf.zeros_like(weights), weights)
    return weights


def relaxed_shortest_path(
    costs,
    beta: float = 10.0,
    n_iter: Optional[int] = None,
    loop: str = "for",
    t_conorm: str = "probabilistic",
    p: Optional[float] = None,
    max_iter: int = 1024,
    epsilon: float = 1e-5,
    absorbing_source: bool = False,
    unroll: bool = True,
) -> tf.Tensor:
    """Relaxed Bellman-Ford shortest path (AlgoVision) on ``H×W`` grids.

    Distances ``d`` start at ``10¹²`` except ``d_source = 0``; out-of-grid
    neighbours read ``10¹²``. Each of ``n_iter`` forward sweeps computes, for
    every cell with neighbour distances ``u_1..u_8``,

    .. math::

        w = \\operatorname{softmax}(-\\beta u), \\qquad
        d \\leftarrow \\textstyle\\sum_k w_k u_k + c, \\qquad d_{source} = 0,

    and the last ``w`` are the predecessor weights. The traceback starts with
    ``pos`` one-hot at the target and ``path = 0`` and repeats
    ``path ← path ⊕ pos``, ``pos ← Σ_k shift_k(pos · w_k)`` (mass moves to
    the predecessors).

    * ``loop="for"``: ``n_iter`` traceback steps.
    * ``loop="while"``: the expectation over stopping times of a loop that
      continues with probability ``q(s) = σ(-β(path_source - 1))``: with
      ``π_0 = q(s_0)`` and ``π_{k+1} = π_k q(s_{k+1})`` the result is
      ``(1 - π_0) s_0 + Σ_k (π_k - π_{k+1}) s_{k+1} + π_K s_K``, stopping
      once ``max π_K < epsilon`` or after ``max_iter`` steps. It runs as one
      ``tf.while_loop`` with that dynamic stop (XLA-compilable). As in
      AlgoVision the maximum is over the batch, so a map that has stopped
      keeps accumulating terms below ``epsilon`` while others run.

    Example:

    >>> import tensorflow as tf
    >>> from keras_newton.shortest_path import relaxed_shortest_path
    >>> costs = tf.random.stateless_uniform([2, 5, 5], seed=[1, 2])
    >>> relaxed_shortest_path(costs, beta=10.0, n_iter=10).shape
    TensorShape([2, 5, 5])

    Args:
      costs: ``[..., H, W]`` float32/float64 cell costs.
      beta: inverse temperature ``β > 0`` of the softmin and of the While
        loop's condition.
      n_iter: forward sweeps (and traceback steps of the For loop);
        ``None`` uses ``H + W``.
      loop: ``"for"`` or ``"while"``.
      t_conorm: ``"probabilistic"``, ``"hamacher"`` (needs ``p >= 0``) or
        ``"yager_1"``.
      p: Hamacher parameter; only valid with ``t_conorm="hamacher"``.
      max_iter: cap on the While loop's iterations.
      epsilon: the While loop stops when every continuation probability is
        below ``epsilon``.
      absorbing_source: AlgoVision (``False``, default) also gives the
        source predecessor weights, so traceback mass that reaches the source
        moves on to its neighbours (for ``β → ∞``: to the cheapest one) and
        back; once the traceback runs longer than the path, that neighbour
        joins the path. ``True`` drops mass at the source instead, so for
        ``β → ∞`` and ``n_iter`` at least the path's length both loops
        return exactly the shortest path.
      unroll: unroll the forward sweeps and the For traceback in Python
        (default), so nested-tape Hessians work in every mode including
        XLA. ``False`` runs them as ``tf.while_loop`` s: XLA compiles in
        seconds rather than minutes for 12×12 grids and runs faster on CPU,
        but second derivatives then fail under XLA (use it for training
        with gradients or Fisher curvature).

    Returns:
      ``[..., H, W]`` relaxed path indicators in ``[0, 1]``, differentiable in
      ``costs`` (also twice, through nested tapes). Costs should be finite: a
      map with a NaN or ``-inf`` cost gets an all-NaN path (the softmin has
      no meaning there), in every mode, and the other maps of the batch are
      unaffected (so a loss on it is NaN, and :class:`keras_newton.NewtonLoss`
      leaves that sample out); ``+inf`` costs give finite values without
      meaning.
    """
    beta, epsilon = validate_relaxed_args(beta, n_iter, loop, max_iter, epsilon)
    combine = t_conorm_fn(t_conorm, p)
    flat, restore = grid.batched_grid(costs)
    # The softmin of a NaN or -inf cost is NaN; the While loop's stop is a
    # max over the batch, so such a map would change every other map.
    flat, finish = grid.set_aside_maps(flat, tf.reduce_any(
        tf.logical_or(tf.math.is_nan(flat), tf.equal(flat, -np.inf)), axis=[-2, -1]))
    height, width = flat.shape[-2], flat.shape[-1]
    if n_iter is None:
        n_iter = height + width
    source_float, target_float = grid.corner_masks(height, width, flat.dtype)
    source = tf.broadcast_to(tf.cast(source_float, tf.bool), tf.shape(flat))
    weights = _forward(flat, source, beta, n_iter, bool(absorbing_source), bool(unroll))

    def body(path, position):
        return combine(path, position), grid.move_to_neighbours(position, weights)

    path = tf.zeros_like(flat)
    position = tf.broadcast_to(target_float, tf.shape(flat))
    if loop == "for":
        path, _ = _repeat(body, (path, position), n_iter, bool(unroll))
        return restore(finish(path))
    return restore(finish(_expected_while(body, path, position, beta, max_iter, epsilon)))


def _expected_while(body, path, position, beta, max_iter, epsilon):
    """Expectation of the traceback state over the While loop's stopping time."""

    def keep_going(path):
        # AlgoVision's relaxed `path[source] <= 1`, one probability per map.
        return tf.sigmoid(-beta * (path[:, 0, 0] - 1.0))[:, None, None]

    continuing = keep_going(path)
    expected = (1.0 - continuing) * path

    def step(i, path, position, continuing, expected):
        path, position = body(path, position)
        still = continuing * keep_going(path)
        expected = expected + (continuing - still) * path
        return i + 1, path, position, still, expected

    def more(i, path, position, continuing, expected):
        return tf.reduce_max(continuing) >= epsilon

    _, path, _, continuing, expected = tf.while_loop(
        more,
        step,
        (tf.constant(0, tf.int32), path, position, continuing, expected),
        maximum_iterations=max_iter,
    )
    return expected + continuing * path
