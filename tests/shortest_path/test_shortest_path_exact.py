"""Exact grid shortest path vs an independent Dijkstra written here in Python."""

import heapq

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.shortest_path import shortest_path

# Row-major offsets (dr, dc): the documented tie-breaking order.
OFFSETS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def dijkstra_labels(costs):
    """Lexicographic (cost, cells - 1) labels of the best paths from (0, 0)."""
    height, width = costs.shape
    labels = {(0, 0): (costs[0, 0], 0)}
    heap = [(costs[0, 0], 0, (0, 0))]
    done = set()
    while heap:
        cost, hops, cell = heapq.heappop(heap)
        if cell in done:
            continue
        done.add(cell)
        for dr, dc in OFFSETS:
            r, c = cell[0] + dr, cell[1] + dc
            if 0 <= r < height and 0 <= c < width:
                label = (cost + costs[r, c], hops + 1)
                if (r, c) not in labels or label < labels[(r, c)]:
                    labels[(r, c)] = label
                    heapq.heappush(heap, (*label, (r, c)))
    return labels


def dijkstra_path(costs):
    """Path mask by the documented rule: best (cost, cells) label, first offset."""
    costs = np.maximum(np.asarray(costs, np.float64), 0.0)
    height, width = costs.shape
    labels = dijkstra_labels(costs)
    mask = np.zeros_like(costs)
    cell = (height - 1, width - 1)
    mask[cell] = 1
    while cell != (0, 0):
        candidates = [
            (labels[(cell[0] + dr, cell[1] + dc)], k)
            for k, (dr, dc) in enumerate(OFFSETS)
            if 0 <= cell[0] + dr < height and 0 <= cell[1] + dc < width
        ]
        _, k = min(candidates)
        cell = (cell[0] + OFFSETS[k][0], cell[1] + OFFSETS[k][1])
        mask[cell] = 1
    return mask, labels[(height - 1, width - 1)][0]


def is_valid_path(mask):
    """Connected 8-neighbour chain from the top-left to the bottom-right cell."""
    cells = {tuple(c) for c in np.argwhere(mask > 0.5)}
    height, width = mask.shape
    if (0, 0) not in cells or (height - 1, width - 1) not in cells:
        return False
    seen, stack = {(0, 0)}, [(0, 0)]
    while stack:
        r, c = stack.pop()
        for dr, dc in OFFSETS:
            if (r + dr, c + dc) in cells and (r + dr, c + dc) not in seen:
                seen.add((r + dr, c + dc))
                stack.append((r + dr, c + dc))
    return (height - 1, width - 1) in seen


SIZES = [(1, 1), (1, 5), (6, 1), (4, 7), (9, 6), (12, 12)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_dijkstra_on_random_grids(mode, dtype, rng):
    for height, width in SIZES:
        costs = rng.uniform(0.1, 2.0, size=(5, height, width)).astype(dtype)
        paths = run_in_mode(mode, shortest_path, tf.constant(costs))
        assert paths.dtype == dtype and paths.shape == costs.shape
        for b in range(costs.shape[0]):
            expected, _ = dijkstra_path(costs[b])
            np.testing.assert_array_equal(paths[b], expected)


def test_ties_follow_documented_rule(mode):
    # Integer costs make many exact ties; labels and traceback must follow the
    # rule (fewest cells, then first offset in row-major order) exactly.
    rng = np.random.default_rng(3)
    costs = rng.integers(1, 4, size=(8, 7, 9)).astype(np.float32)
    costs[0] = 1.0  # every monotone staircase ties
    paths = run_in_mode(mode, shortest_path, tf.constant(costs))
    for b in range(costs.shape[0]):
        expected, optimum = dijkstra_path(costs[b])
        np.testing.assert_array_equal(paths[b], expected)
        assert is_valid_path(paths[b])
        assert np.sum(paths[b] * costs[b]) == optimum


def test_hand_checked_tie():
    # 2x3 of ones: the 3-cell paths pass (0, 1) or (1, 1); from the target
    # (1, 2) offset (-1, -1) comes before (0, -1), so (0, 1) is chosen.
    path = shortest_path(tf.ones([2, 3])).numpy()
    np.testing.assert_array_equal(path, [[1, 1, 0], [0, 0, 1]])


def test_hand_checked_detour():
    # The cheap cells force a detour around the expensive block.
    costs = np.array(
        [[1, 1, 1, 1], [9, 9, 9, 1], [1, 1, 1, 1], [1, 9, 9, 9], [1, 1, 1, 1]],
        np.float32,
    )
    expected = np.array(
        [[1, 1, 1, 0], [0, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 1]],
        np.float32,
    )
    np.testing.assert_array_equal(shortest_path(costs).numpy(), expected)


def test_zero_and_negative_costs_are_clipped(mode, rng):
    costs = rng.uniform(-1.0, 2.0, size=(4, 6, 8)).astype(np.float32)
    paths = run_in_mode(mode, shortest_path, tf.constant(costs))
    for b in range(4):
        expected, optimum = dijkstra_path(costs[b])
        np.testing.assert_array_equal(paths[b], expected)
        assert is_valid_path(paths[b])
        np.testing.assert_allclose(np.sum(paths[b] * np.maximum(costs[b], 0)), optimum, rtol=1e-5)


def test_leading_batch_dims_and_no_gradient(rng):
    costs = tf.constant(rng.uniform(0.1, 1.0, size=(2, 3, 5, 4)), tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(costs)
        paths = shortest_path(costs)
    assert paths.shape == costs.shape
    np.testing.assert_array_equal(
        paths.numpy().reshape(6, 5, 4), shortest_path(tf.reshape(costs, [6, 5, 4])).numpy()
    )
    assert tape.gradient(paths, costs) is None


def test_dynamic_batch_size_under_xla(rng):
    solve = tf.function(
        shortest_path,
        jit_compile=True,
        input_signature=[tf.TensorSpec([None, 5, 6], tf.float32)],
    )
    costs = rng.uniform(0.1, 1.0, size=(3, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(solve(costs).numpy(), shortest_path(costs).numpy())


def test_bad_input():
    with pytest.raises(TypeError, match="costs"):
        shortest_path(tf.ones([3, 3], tf.int32))
    with pytest.raises(ValueError, match="costs"):
        shortest_path(tf.ones([5]))
    with pytest.raises(ValueError, match="max_iterations"):
        shortest_path(tf.ones([3, 3]), max_iterations=0)
