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

``n`` that is not a power of two is padded as in the reference ``diffsort``
package: the network runs on ``N = 2^ceil(log2 n)`` wires, the real values
sit on the *last* ``n`` wires and the first ``N - n`` wires hold padding. A
comparator between two real values is relaxed; one that involves padding is
resolved exactly and statically with the padding acting as ``-inf`` (it goes
to ``lo``; a real value moves only when ``-inf`` sits on ``hi``), so it costs
nothing at run time and no padding value leaks into the real outputs.

The reference instead skips every comparator that touches padding. Where
that skip is what ``-inf`` would do, both agree exactly (all powers of two and
most other n, e.g. 3, 5, 6, 7, 9, 10, 12-18, 20, 33; tested), so published
steepness values carry over. For some n (11, 19, 21, 22, 23, ...) the two
differ, and for n = 22 and 38 the reference's network does not sort at all
(``steepness -> inf`` leaves 0-1 inputs unsorted); resolving padding exactly
keeps a valid sorting network, and a doubly stochastic permutation matrix,
for every n.

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
    num_wires = max(num_wires, n)
    first_real = num_wires - n
    # storage slot -> wire; wires below ``first_real`` hold -inf padding.
    slot_wire = list(range(first_real, num_wires))
    padding = [w < first_real for w in range(num_wires)]
    plan_layers = []
    for layer in layers:
        wire_slot = {w: s for s, w in enumerate(slot_wire)}
        lows, highs, moved = [], [], set()
        for lo, hi in layer:
            if padding[lo] and padding[hi]:
                continue
            if padding[lo] or padding[hi]:
                if padding[hi]:  # -inf sits on the max wire: the real value moves
                    slot_wire[wire_slot[lo]] = hi
                    padding[lo], padding[hi] = True, False
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
    if sorted(wire_slot) != list(range(first_real, num_wires)):
        raise AssertionError("padding did not end on the first wires")
    output = np.asarray([wire_slot[first_real + j] for j in range(n)], dtype=np.int32)
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
