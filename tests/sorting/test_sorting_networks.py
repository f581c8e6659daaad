"""Static structure of the sorting networks: layers, plans, padding, caching."""

import itertools

import numpy as np
import pytest

from keras_newton.sorting import networks


def _recursive_bitonic(num_wires):
    """Batcher's recursive bitonic sorter, as a flat list of (min, max) wires."""
    comparators = []

    def merge(lo, count, ascending):
        if count < 2:
            return
        half = count // 2
        for i in range(lo, lo + half):
            comparators.append((i, i + half) if ascending else (i + half, i))
        merge(lo, half, ascending)
        merge(lo + half, half, ascending)

    def sort(lo, count, ascending):
        if count < 2:
            return
        half = count // 2
        sort(lo, half, True)
        sort(lo + half, half, False)
        merge(lo, count, ascending)

    sort(0, num_wires, True)
    return comparators


def _run_hard(layers, values):
    values = list(values)
    for layer in layers:
        for lo, hi in layer:
            if values[lo] > values[hi]:
                values[lo], values[hi] = values[hi], values[lo]
    return values


def _run_plan(plan, values):
    """Runs a plan with exact comparators, as diff_sort does with alpha in {0,1}."""
    storage = np.asarray(values, dtype=float)
    for gather, k in plan.layers:
        storage = storage[gather]
        a, b = storage[:k], storage[k : 2 * k]
        storage = np.concatenate([np.minimum(a, b), np.maximum(a, b), storage[2 * k :]])
    return storage[plan.output_indices]


def test_odd_even_layers_compare_neighbours_of_alternating_parity():
    for n in (2, 3, 6, 7):
        layers = networks.odd_even_network(n)
        assert len(layers) == n
        for k, layer in enumerate(layers):
            assert layer == [(i, i + 1) for i in range(n - 1) if i % 2 == k % 2]


@pytest.mark.parametrize("num_wires", [2, 4, 8, 16, 32])
def test_bitonic_layers_match_recursive_construction(num_wires):
    layers = networks.bitonic_network(num_wires)
    log = int(np.log2(num_wires))
    assert len(layers) == log * (log + 1) // 2
    for layer in layers:
        wires = [w for c in layer for w in c]
        assert len(wires) == len(set(wires)) == num_wires  # disjoint, complete
    recursive = _recursive_bitonic(num_wires)
    assert sorted(c for layer in layers for c in layer) == sorted(recursive)
    # Same schedule: every wire meets the same partners in the same order.
    for wire in range(num_wires):
        layered = [c for layer in layers for c in layer if wire in c]
        assert layered == [c for c in recursive if wire in c]


@pytest.mark.parametrize("network", networks.NETWORKS)
def test_networks_sort_all_zero_one_inputs(network):
    # 0-1 principle: a comparator network sorts everything iff it sorts 0/1.
    for n in range(2, 12):
        plan = networks.network_plan(network, n)
        for bits in itertools.product((0.0, 1.0), repeat=n):
            np.testing.assert_array_equal(_run_plan(plan, bits), sorted(bits))


@pytest.mark.parametrize("network", networks.NETWORKS)
@pytest.mark.parametrize("n", [13, 33, 64, 100])
def test_plans_sort_random_inputs_with_duplicates(network, n, rng):
    plan = networks.network_plan(network, n)
    for _ in range(20):
        values = rng.integers(0, n // 2, size=n).astype(float)
        np.testing.assert_array_equal(_run_plan(plan, values), np.sort(values))


def test_padding_matches_the_padded_network_run_with_infinity(rng):
    # Exact handling of the padding wires must equal running the power-of-two
    # network on inputs padded with +inf and dropping the tail.
    for n in (3, 5, 6, 7, 9, 17):
        layers = networks.bitonic_network(n)
        num_wires = 1 << (n - 1).bit_length()
        values = rng.normal(size=n)
        padded = _run_hard(layers, list(values) + [np.inf] * (num_wires - n))
        np.testing.assert_array_equal(padded[:n], np.sort(values))
        np.testing.assert_array_equal(
            _run_plan(networks.network_plan("bitonic", n), values), np.sort(values)
        )


def test_plan_sizes_and_relaxed_comparator_counts():
    plan = networks.network_plan("odd_even", 10)
    assert len(plan.layers) == 10
    assert [k for _, k in plan.layers] == [5, 4] * 5
    # Bitonic for 5 values: comparators touching padding cost nothing, so the
    # relaxed comparators are fewer than in the 8-wire network (24).
    plan = networks.network_plan("bitonic", 5)
    relaxed = sum(k for _, k in plan.layers)
    assert 0 < relaxed < 24
    for gather, k in plan.layers:
        assert sorted(gather.tolist()) == list(range(5)) and 2 * k <= 5


def test_plans_are_cached_per_network_and_size():
    assert networks.network_plan("bitonic", 12) is networks.network_plan("bitonic", 12)
    assert networks.network_plan("odd_even", 12) is not networks.network_plan(
        "bitonic", 12
    )


def test_bad_network_arguments():
    with pytest.raises(ValueError, match="network"):
        networks.network_plan("bubble", 4)
    with pytest.raises(ValueError, match="n >= 2"):
        networks.network_plan("odd_even", 1)
