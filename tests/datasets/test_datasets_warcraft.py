"""Tests for the Warcraft TFDS builder on a fake archive in the published format."""

import os

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from keras_newton.datasets import shortest_path_data, warcraft  # noqa: E402

SIZES = {"train": 5, "val": 2, "test": 3}


def _write_archive(folder, rng, grid=12, sizes=SIZES):
    """Writes {split}_{maps,shortest_paths,vertex_weights}.npy like the archive."""
    os.makedirs(folder, exist_ok=True)
    arrays = {}
    for prefix, n in sizes.items():
        side = 8 * grid
        arrays[prefix] = (
            rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8),
            rng.choice([0.8, 1.2, 5.3, 7.7, 9.2], (n, grid, grid)),  # float64
            (rng.random((n, grid, grid)) < 0.3).astype(np.float64),
        )
        maps, weights, paths = arrays[prefix]
        np.save(os.path.join(folder, f"{prefix}_maps.npy"), maps)
        np.save(os.path.join(folder, f"{prefix}_vertex_weights.npy"), weights)
        np.save(os.path.join(folder, f"{prefix}_shortest_paths.npy"), paths)
    return arrays


def _prepare(tmp_path, manual_dir, config="12x12"):
    return shortest_path_data.prepare_shortest_path_builder(
        "warcraft", config=config, data_dir=str(tmp_path / "tfds"),
        manual_dir=str(manual_dir),
    )


def test_builder_loads_the_archive_exactly(tmp_path, rng):
    manual = tmp_path / "manual"
    arrays = _write_archive(manual / "warcraft_shortest_path_oneskin" / "12x12", rng)
    builder = _prepare(tmp_path, manual)
    assert builder.info.name == "warcraft_shortest_path"
    for split, prefix in warcraft.SPLIT_FILES.items():
        assert builder.info.splits[split].num_examples == SIZES[prefix]
        maps, weights, paths = arrays[prefix]
        seen = set()
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            # TFDS reorders examples; find each one's source row by its map.
            row = int(np.flatnonzero(
                np.all(maps == example["map"], axis=(1, 2, 3))
            )[0])
            seen.add(row)
            assert example["weights"].dtype == np.float32
            np.testing.assert_array_equal(example["weights"], weights[row].astype(np.float32))
            assert example["path"].dtype == np.uint8
            np.testing.assert_array_equal(example["path"], paths[row])
        assert seen == set(range(SIZES[prefix]))


def test_pipeline_over_the_builder(tmp_path, rng):
    manual = tmp_path / "manual"
    arrays = _write_archive(manual / "12x12", rng)
    builder = _prepare(tmp_path, manual)
    maps, paths = next(iter(shortest_path_data.shortest_path_dataset(
        builder, "train", batch_size=4, seed=1
    )))
    assert maps.shape == (4, 96, 96, 3) and paths.shape == (4, 12, 12)
    assert maps.dtype == "float32" and paths.dtype == "float32"
    assert 0.0 <= float(np.min(maps)) and float(np.max(maps)) <= 1.0
    everything = next(iter(shortest_path_data.shortest_path_dataset(
        builder, "test", batch_size=3, targets="all"
    )))
    assert set(everything) == {"map", "weights", "path"}
    np.testing.assert_allclose(
        np.sort(everything["weights"].numpy().ravel()),
        np.sort(arrays["test"][1].ravel()), rtol=1e-6,
    )


@pytest.mark.parametrize(
    "layout", ["warcraft_shortest_path_oneskin/12x12", "12x12", "."]
)
def test_find_split_folder_accepts_the_archive_layouts(tmp_path, rng, layout):
    folder = tmp_path / layout
    _write_archive(folder, rng, sizes={"train": 1})
    assert os.path.samefile(warcraft.find_split_folder(str(tmp_path), 12), folder)


def test_missing_files_explain_the_manual_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="warcraft_maps.tar.gz"):
        warcraft.find_split_folder(str(tmp_path), 12)


def test_other_grid_sizes(tmp_path, rng):
    manual = tmp_path / "manual"
    _write_archive(manual / "18x18", rng, grid=18, sizes={"train": 2, "val": 1, "test": 1})
    builder = _prepare(tmp_path, manual, config="18x18")
    example = next(iter(builder.as_dataset(split="train")))
    assert example["map"].shape == (144, 144, 3) and example["path"].shape == (18, 18)


def _corrupt(folder, kind, array, allow_pickle=False):
    np.save(os.path.join(folder, f"train_{kind}.npy"), array, allow_pickle=allow_pickle)


@pytest.mark.parametrize(
    "kind, bad, match",
    [
        ("maps", np.zeros((5, 96, 96, 3), np.float32), "train_maps.npy"),
        ("maps", np.zeros((5, 64, 64, 3), np.uint8), "train_maps.npy"),
        ("vertex_weights", np.ones((4, 12, 12)), "train_vertex_weights.npy"),
        ("shortest_paths", np.full((5, 12, 12), 2.0), "only 0 and 1"),
    ],
)
def test_malformed_files_are_refused(tmp_path, rng, kind, bad, match):
    _write_archive(tmp_path, rng, sizes={"train": 5})
    _corrupt(tmp_path, kind, bad)
    with pytest.raises(ValueError, match=match):
        warcraft.load_split_arrays(str(tmp_path), "train", 12)


def test_pickled_files_are_not_executed(tmp_path, rng):
    _write_archive(tmp_path, rng, sizes={"train": 2})
    objects = np.empty(2, dtype=object)
    objects[:] = [np.zeros((12, 12)), np.zeros((12, 12))]
    _corrupt(tmp_path, "vertex_weights", objects, allow_pickle=True)
    with pytest.raises(ValueError, match="train_vertex_weights.npy.*(objects|pickle)"):
        warcraft.load_split_arrays(str(tmp_path), "train", 12)
