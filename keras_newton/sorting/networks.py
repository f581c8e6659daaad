"""Static structure of the sorting networks used by ``diff_sort``.

A network on ``N`` wires is a list of layers; a layer is a list of disjoint
comparators ``(lo, hi)``: after it, wire ``lo`` holds the minimum and wire
``hi`` the maximum of the two values.

* Odd-even transposition network: ``n`` layers, layer ``k`` compares
  ``(i, i + 1)`` for every ``i`` with ``i = k mod 2``.
* Bitonic network (Batcher, 1968): for ``N = 2^m`` wires, merge stages of size
  ``s = 2, 4, ..., N`` each with sub-stages ``d = s/2, ..., 1``; wire ``i``
  meets wire ``i XOR d``, ascending if ``i AND s == 0`` and descending
  otherwise (a descending comparator is ``(hi, lo)`` here).

``n`` that is not a power of two is handled by padding to ``N = 2^ceil(log2 n)``
wires whose extra values are ``+inf``. A comparator between two real values is
relaxed; one involving padding is resolved exactly and statically (``+inf``
always goes to ``hi``), so it costs nothing at run time, no padding value ever
leaks into the real outputs, and the real values end on wires ``0..n-1``. This
equals padding with a huge value under ``steepness -> inf`` for those
comparators only, and keeps the n x n permutation matrix doubly stochastic.

``network_plan(network, n)`` turns a network into gather indices for a
"storage order" of the ``n`` real values (cached per ``(network, n)``): each
relaxed layer gathers the ``k`` min-inputs first, then the ``k`` max-inputs,
then the untouched values; the outputs are written back in that same order, so
a layer costs one gather and the layer loop is a fixed, unrolled XLA graph.

References:
  Batcher. "Sorting networks and their applications", AFIPS 1968.
  Knuth. The Art of Computer Programming, Vol. 3, Sec. 5.3.4.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

NETWORKS = ("odd_even", "bitonic")

Layer = list[tuple[int, int]]


def odd_even_network(n: int) -> list[Layer]:
    """Comparators of the odd-even transposition network on ``n`` wires."""
    return [[(i, i + 1) for i in range(k % 2, n - 1, 2)] for k in range(n)]


def bitonic_network(n: int) -> list[Layer]:
    """Comparators of the bitonic network on ``2^ceil(log2 n)`` wires."""
    num_wires = 1 << max(n - 1, 1).bit_length()
    layers = []
    stage = 2
    while stage <= num_wires:
        distance = stage // 2
        while distance >= 1:
            layer = []
            for i in range(num_wires):
                partner = i ^ distance
                if partner > i:
                    ascending = (i & stage) == 0
                    layer.append((i, partner) if ascending else (partner, i))
            layers.append(layer)
            distance //= 2
        stage *= 2
    return layers


@dataclasses.dataclass(frozen=True)
class NetworkPlan:
    """Gather indices that run a sorting network on ``n`` real values.

    Attributes:
      n: Number of real values.
      layers: ``(gather_indices, k)`` per layer with at least one relaxed
        comparator: storage slots ``[0, k)`` of the gathered values meet slots
        ``[k, 2k)``; min goes to the first block and max to the second.
      output_indices: Storage slot that holds sorted position ``j``.
    """

    n: int
    layers: tuple[tuple[np.ndarray, int], ...]
    output_indices: np.ndarray


def _build_plan(layers: list[Layer], n: int) -> NetworkPlan:
    num_wires = max(max(max(c) for c in layer) for layer in layers if layer) + 1
    slot_wire = list(range(n))  # storage slot -> wire; wires >= n are padding
    padding = [w >= n for w in range(max(num_wires, n))]
    plan_layers = []
    for layer in layers:
        wire_slot = {w: s for s, w in enumerate(slot_wire)}
        lows, highs, moved = [], [], set()
        for lo, hi in layer:
            if padding[lo] and padding[hi]:
                continue
            if padding[lo] or padding[hi]:
                if padding[lo]:  # +inf sits on the min wire: the real value moves
                    slot_wire[wire_slot[hi]] = lo
                    padding[lo], padding[hi] = False, True
                continue
            lows.append(wire_slot[lo])
            highs.append(wire_slot[hi])
            moved.update((lo, hi))
        if not lows:
            continue
        rest = [s for s, w in enumerate(slot_wire) if w not in moved]
        gather = np.asarray(lows + highs + rest, dtype=np.int32)
        slot_wire = [slot_wire[s] for s in gather]
        plan_layers.append((gather, len(lows)))
    wire_slot = {w: s for s, w in enumerate(slot_wire)}
    if sorted(wire_slot) != list(range(n)):
        raise AssertionError("padding did not end on the last wires")
    output = np.asarray([wire_slot[j] for j in range(n)], dtype=np.int32)
    return NetworkPlan(n=n, layers=tuple(plan_layers), output_indices=output)


@functools.lru_cache(maxsize=None)
def network_plan(network: str, n: int) -> NetworkPlan:
    """Builds (once per ``(network, n)``) the static plan for ``n`` values."""
    if network not in NETWORKS:
        raise ValueError(f"Unknown `network` {network!r}; expected one of {NETWORKS}.")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"A sorting network needs n >= 2 values, got n={n!r}.")
    layers = odd_even_network(n) if network == "odd_even" else bitonic_network(n)
    return _build_plan(layers, n)
