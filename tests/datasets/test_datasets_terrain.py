"""Tests for the synthetic terrain generator and its TFDS builder."""

import heapq

import numpy as np
import pytest

from keras_newton.datasets import terrain

NUM_CLASSES = len(terrain.TERRAIN_COSTS)


def dijkstra_cost(costs):
    """Minimum vertex-weighted 8-connected path cost, both endpoints counted."""
    h, w = costs.shape
    best = np.full((h, w), np.inf)
    best[0, 0] = costs[0, 0]
    queue = [(costs[0, 0], 0, 0)]
    while queue:
        d, r, c = heapq.heappop(queue)
        if d > best[r, c]:
            continue
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                rr, cc = r + dr, c + dc
                if (dr or dc) and 0 <= rr < h and 0 <= cc < w:
                    if d + costs[rr, cc] < best[rr, cc]:
                        best[rr, cc] = d + costs[rr, cc]
                        heapq.heappush(queue, (best[rr, cc], rr, cc))
    return best[-1, -1]


def is_connected_path(mask):
    """True when the cells of ``mask`` are one 8-connected component holding
    both corners (a simple path has exactly that)."""
    h, w = mask.shape
    if not (mask[0, 0] and mask[-1, -1]):
        return False
    seen, stack = {(0, 0)}, [(0, 0)]
    while stack:
        r, c = stack.pop()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                cell = (r + dr, c + dc)
                if 0 <= cell[0] < h and 0 <= cell[1] < w and mask[cell] and cell not in seen:
                    seen.add(cell)
                    stack.append(cell)
    return len(seen) == int(mask.sum()) and (h - 1, w - 1) in seen


@pytest.fixture(scope="module")
def maps():
    return terrain.make_terrain_maps(40, seed=11)


def test_shapes_dtypes_and_classes(maps):
    assert maps["map"].shape == (40, 96, 96, 3) and maps["map"].dtype == np.uint8
    assert maps["weights"].shape == (40, 12, 12) and maps["weights"].dtype == np.float32
    assert maps["terrain"].shape == (40, 12, 12)
    counts = np.bincount(maps["terrain"].ravel(), minlength=NUM_CLASSES)
    assert np.all(counts > 0.03 * counts.sum())  # every class occurs


# Vertex weights of the published Warcraft shortest-path data (Vlastelica et
# al., ICLR 2020), written out here so the generator is checked against the
# specification rather than against itself.
PUBLISHED_WARCRAFT_WEIGHTS = (0.8, 1.2, 5.3, 7.7, 9.2)


def test_terrain_costs_are_the_published_warcraft_weights(maps):
    assert tuple(terrain.TERRAIN_COSTS) == PUBLISHED_WARCRAFT_WEIGHTS
    published = np.asarray(PUBLISHED_WARCRAFT_WEIGHTS)
    weights = maps["weights"].astype(np.float64)
    # Every generated cell weight lies within the 10 % jitter of a published weight ...
    nearest = np.min(np.abs(weights[..., None] / published - 1.0), axis=-1)
    assert np.all(nearest <= 0.1 + 1e-6)
    # ... and the cells of each terrain class cluster around that class's weight.
    for terrain_class, weight in enumerate(PUBLISHED_WARCRAFT_WEIGHTS):
        cells = weights[maps["terrain"] == terrain_class]
        assert cells.size > 0
        assert abs(np.median(cells) / weight - 1.0) < 0.03
        assert np.all(np.abs(cells / weight - 1.0) <= 0.1 + 1e-6)


def test_costs_follow_the_warcraft_weights_with_bounded_jitter(maps):
    base = np.asarray(terrain.TERRAIN_COSTS)[maps["terrain"]]
    ratio = maps["weights"] / base
    assert np.all(np.abs(ratio - 1.0) <= 0.1 + 1e-6)
    for i in range(len(ratio)):
        for c in range(NUM_CLASSES):
            cells = ratio[i][maps["terrain"][i] == c]
            if cells.size:  # one jitter per class and map
                np.testing.assert_allclose(cells, cells[0], rtol=1e-6)
    # Jitter differs between maps, so costs vary per map.
    assert np.std(ratio[:, 0, 0]) > 0.01
    exact = terrain.make_terrain_maps(3, seed=11, cost_jitter=0.0)
    np.testing.assert_allclose(
        exact["weights"], np.asarray(terrain.TERRAIN_COSTS, np.float32)[exact["terrain"]]
    )


def test_terrain_is_spatially_coherent(maps):
    classes = maps["terrain"]
    same = np.mean(np.concatenate([
        (classes[:, 1:, :] == classes[:, :-1, :]).ravel(),
        (classes[:, :, 1:] == classes[:, :, :-1]).ravel(),
    ]))
    shares = np.bincount(classes.ravel()) / classes.size
    # Independent cells would agree with probability sum_c p_c^2.
    assert same > np.sum(shares**2) + 0.25


def test_costs_are_readable_from_the_image(maps):
    # Nearest-class-mean colour per tile (fit on half, scored on the other half)
    # recovers the class, and within a class the shade tracks the cost jitter.
    tiles = maps["map"].reshape(40, 12, 8, 12, 8, 3).mean(axis=(2, 4)) / 255.0
    feats, labels = tiles.reshape(40, 144, 3), maps["terrain"].reshape(40, 144)
    means = np.stack([feats[:20][labels[:20] == c].mean(0) for c in range(NUM_CLASSES)])
    guess = np.argmin(((feats[20:, :, None] - means) ** 2).sum(-1), axis=-1)
    assert np.mean(guess == labels[20:]) > 0.9
    grass = labels == 1
    brightness = feats.sum(-1)[grass]
    jitter = (maps["weights"].reshape(40, 144) / terrain.TERRAIN_COSTS[1])[grass]
    assert np.corrcoef(brightness, jitter)[0, 1] < -0.5


def test_generation_is_deterministic_and_sliceable(maps):
    again = terrain.make_terrain_maps(40, seed=11)
    for key in maps:
        np.testing.assert_array_equal(maps[key], again[key])
    tail = terrain.make_terrain_maps(5, seed=11, first_index=30)
    np.testing.assert_array_equal(tail["map"], maps["map"][30:35])
    other = terrain.make_terrain_maps(5, seed=12)
    assert not np.array_equal(other["map"], maps["map"][:5])
    tuple_seed = terrain.make_terrain_maps(2, seed=(11, 1))
    assert not np.array_equal(tuple_seed["map"], maps["map"][:2])


def test_paths_are_valid_shortest_paths():
    data = terrain.make_terrain_arrays(12, seed=4)
    assert data["path"].shape == (12, 12, 12) and data["path"].dtype == np.uint8
    for mask, costs in zip(data["path"], data["weights"]):
        assert set(np.unique(mask)) <= {0, 1}
        assert is_connected_path(mask)
        np.testing.assert_allclose(
            costs[mask == 1].sum(), dijkstra_cost(costs.astype(np.float64)), rtol=1e-5
        )


def test_other_grid_and_tile_sizes():
    data = terrain.make_terrain_maps(3, seed=0, grid_size=6, tile_size=4)
    assert data["map"].shape == (3, 24, 24, 3)
    assert data["weights"].shape == data["terrain"].shape == (3, 6, 6)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(num_maps=-1), ValueError, "num_maps"),
        (dict(num_maps=2.0), TypeError, "num_maps"),
        (dict(seed=-3), ValueError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(grid_size=1), ValueError, "grid_size"),
        (dict(tile_size=1), ValueError, "tile_size"),
        (dict(cost_jitter=0.5), ValueError, "cost_jitter"),
    ],
)
def test_rejects_bad_arguments(kwargs, error, name):
    kwargs = {"num_maps": 2, **kwargs}
    with pytest.raises(error, match=name):
        terrain.make_terrain_maps(**kwargs)


# --- the TFDS builder --------------------------------------------------------


def test_builder_writes_the_generated_splits(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_newton.datasets import shortest_path_data, synthetic_terrain

    builder = synthetic_terrain.synthetic_terrain_builder(
        str(tmp_path), num_train=6, num_validation=3, num_test=2, seed=5
    )
    builder.download_and_prepare()
    assert builder.info.name == "synthetic_terrain"
    for split, split_id in synthetic_terrain.SPLIT_IDS.items():
        size = {"train": 6, "validation": 3, "test": 2}[split]
        assert builder.info.splits[split].num_examples == size
        expected = terrain.make_terrain_arrays(size, seed=(5, split_id))
        rows = set()
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            row = int(np.flatnonzero(
                np.all(expected["map"] == example["map"], axis=(1, 2, 3))
            )[0])
            rows.add(row)
            np.testing.assert_array_equal(example["weights"], expected["weights"][row])
            np.testing.assert_array_equal(example["path"], expected["path"][row])
        assert rows == set(range(size))
    maps, paths = next(iter(shortest_path_data.shortest_path_dataset(
        builder, "train", batch_size=4
    )))
    assert maps.shape == (4, 96, 96, 3) and paths.shape == (4, 12, 12)


def test_builder_configs():
    pytest.importorskip("tensorflow_datasets")
    from keras_newton.datasets import synthetic_terrain

    assert synthetic_terrain.synthetic_terrain_builder().builder_config.name == "small"
    custom = synthetic_terrain.synthetic_terrain_builder(num_train=10, seed=2)
    assert custom.builder_config.name == "g12_t8_n10-200-500_j100_s2"
    with pytest.raises(ValueError, match="num_test"):
        synthetic_terrain.SyntheticTerrainConfig(name="bad", num_test=-1)
    with pytest.raises(ValueError, match="cost_jitter"):
        synthetic_terrain.SyntheticTerrainConfig(name="bad", cost_jitter=1.0)
