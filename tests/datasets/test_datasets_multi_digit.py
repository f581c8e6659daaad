"""Tests for the multi-digit number-set pipeline (keras_newton.datasets.multi_digit)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton.datasets import multi_digit, sources


def _index_digits(num=7, height=3, width=2):
    """Digit images whose pixels all equal their index, labels index % 10."""
    images = np.broadcast_to(
        np.arange(num, dtype=np.float64)[:, None, None, None], (num, height, width, 1)
    ).copy()
    return images, np.arange(num) % 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compose_numbers_matches_numpy_reference(mode, dtype, rng):
    images, labels = _index_digits()
    images = images.astype(dtype)
    indices = rng.integers(0, 7, size=(2, 3, 4)).astype(np.int32)
    out_images, values = run_in_mode(
        mode, multi_digit.compose_numbers,
        tf.constant(images), tf.constant(labels), tf.constant(indices),
    )
    assert out_images.shape == (2, 3, 3, 8, 1) and out_images.dtype == dtype
    # Reference: horizontal concatenation, value = sum d_j 10^(3-j).
    expected = np.concatenate([images[indices[..., j]] for j in range(4)], axis=-2)
    np.testing.assert_array_equal(out_images, expected)
    digits = labels[indices]
    np.testing.assert_array_equal(
        values, digits @ np.array([1000, 100, 10, 1])
    )
    assert values.dtype == np.float32


def test_compose_numbers_rejects_bad_input():
    images, labels = _index_digits()
    with pytest.raises(ValueError, match="digit_images"):
        multi_digit.compose_numbers(images[0], labels, tf.constant([[0, 1]]))
    with pytest.raises(TypeError, match="indices"):
        multi_digit.compose_numbers(images, labels, tf.constant([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="indices"):
        multi_digit.compose_numbers(images, labels, tf.constant(3))


@pytest.fixture(scope="module")
def train_digits():
    return sources.load_image_source("digits", "train")


def _decode_numbers(number_images, digit_images, digit_labels):
    """Recovers each number from its pixels by exact lookup of the 8×8 blocks."""
    flat = digit_images.reshape(len(digit_images), -1)
    numbers = np.zeros(number_images.shape[:-3])
    for index in np.ndindex(*number_images.shape[:-3]):
        for j in range(4):
            block = number_images[index][:, 8 * j:8 * j + 8, :].reshape(-1)
            matches = np.flatnonzero(np.all(flat == block, axis=1))
            assert matches.size > 0, "block is not an image of the split"
            assert np.all(digit_labels[matches] == digit_labels[matches[0]])
            numbers[index] = 10 * numbers[index] + digit_labels[matches[0]]
    return numbers


def test_dataset_shapes_and_labels_on_real_digits(train_digits):
    dataset = multi_digit.multi_digit_dataset(
        "train", set_size=4, batch_size=3, num_sets=5, seed=3
    )
    batches = list(dataset.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(3, 4, 8, 32, 1), (2, 4, 8, 32, 1)]
    images = np.concatenate([b[0] for b in batches])
    values = np.concatenate([b[1] for b in batches])
    assert images.dtype == np.float32 and values.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(values, _decode_numbers(images, *train_digits))


def test_stream_is_deterministic_given_seed():
    def take(seed, batch_size, num_sets=6):
        ds = multi_digit.multi_digit_dataset(
            "validation", batch_size=batch_size, num_sets=num_sets, seed=seed
        )
        return [np.concatenate(a) for a in zip(*ds.as_numpy_iterator())]

    first, again, rebatched = take(7, 2), take(7, 2), take(7, 4)
    for a, b, c in zip(first, again, rebatched):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    other = take(8, 2)
    assert not np.array_equal(first[1], other[1])
    # A finite stream is a fixed evaluation set, equal to the array helper.
    images, values = multi_digit.multi_digit_arrays(
        "validation", num_sets=6, seed=7
    )
    np.testing.assert_array_equal(images, first[0])
    np.testing.assert_array_equal(values, first[1])


def test_set_i_draws_its_digits_with_seed_s_i(train_digits):
    # The documented definition, one set at a time, against the batched stream.
    images, labels = train_digits
    seed, set_size, batch_size = 3, 4, 5
    ds = multi_digit.multi_digit_dataset(
        "train", set_size=set_size, batch_size=batch_size, seed=seed,
        digit_arrays=(images, labels))
    got_images, got_values = next(iter(ds.skip(2)))
    for k in range(batch_size):
        index = 2 * batch_size + k
        drawn = tf.random.stateless_uniform(
            [set_size, 4], tf.constant([seed, index], tf.int64), 0, len(labels), tf.int32)
        want_images, want_values = multi_digit.compose_numbers(
            tf.constant(images, tf.float32), tf.constant(labels, tf.int32), drawn)
        np.testing.assert_array_equal(got_images[k], want_images)
        np.testing.assert_array_equal(got_values[k], want_values)


def test_infinite_stream_keeps_going():
    ds = multi_digit.multi_digit_dataset("train", batch_size=2, seed=0)
    batches = list(ds.take(3).as_numpy_iterator())
    assert len(batches) == 3
    assert not np.array_equal(batches[0][1], batches[2][1])


def test_splits_are_disjoint_and_cover_the_digits():
    covered = np.concatenate(
        [np.arange(1797)[sources.DIGITS_SPLITS[s]] for s in sources.SPLITS]
    )
    np.testing.assert_array_equal(np.sort(covered), np.arange(1797))
    sizes = {s: len(sources.load_image_source("digits", s)[1]) for s in sources.SPLITS}
    assert sizes == {"train": 1000, "validation": 300, "test": 497}


def test_sets_use_only_their_split(train_digits):
    test_images, test_labels = sources.load_image_source("digits", "test")
    images, values = multi_digit.multi_digit_arrays("test", num_sets=4, seed=1)
    np.testing.assert_array_equal(
        values, _decode_numbers(images, test_images, test_labels)
    )
    train_flat = train_digits[0].reshape(1000, -1)
    blocks = images[0, 0, :, :8, :].reshape(-1)
    # Exact pixel equality across writers would be a coincidence; none occurs.
    assert not np.any(np.all(train_flat == blocks, axis=1))


def test_custom_digit_arrays_and_num_digits():
    images, labels = _index_digits(num=10, height=4, width=4)
    ds = multi_digit.multi_digit_dataset(
        set_size=3, num_digits=2, batch_size=5, num_sets=5,
        digit_arrays=(images, labels),
    )
    x, v = next(ds.as_numpy_iterator())
    assert x.shape == (5, 3, 4, 8, 1)
    # Pixels encode the digit index (= label here), so values are readable.
    np.testing.assert_array_equal(v, 10 * x[..., 0, 0, 0] + x[..., 0, 4, 0])


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(set_size=1), ValueError, "set_size"),
        (dict(set_size=2.5), TypeError, "set_size"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(num_sets=0), ValueError, "num_sets"),
        (dict(num_digits=0), ValueError, "num_digits"),
        (dict(source="cifar10"), ValueError, "source"),
        (dict(split="dev"), ValueError, "split"),
    ],
)
def test_dataset_rejects_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        multi_digit.multi_digit_dataset(**kwargs)


def test_mnist_source_gives_28_by_112_numbers(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    # mock_data replaces the download with random examples of MNIST's spec.
    with tfds.testing.mock_data(num_examples=30):
        images, values = multi_digit.multi_digit_arrays(
            "train", num_sets=2, set_size=3, source="mnist", data_dir=str(tmp_path)
        )
    assert images.shape == (2, 3, 28, 112, 1)
    assert values.shape == (2, 3) and values.max() <= 9999


def test_mnist_source_uses_the_55000_5000_train_validation_split(monkeypatch):
    # The split of the sorting literature: train[:55000] / train[55000:] / test.
    tfds = pytest.importorskip("tensorflow_datasets")
    requested = []

    def fake_load(name, split=None, **kwargs):
        requested.append((name, split))
        images = np.zeros((3, 28, 28, 1), np.uint8)
        return tf.data.Dataset.from_tensor_slices((images, np.arange(3, dtype=np.int64)))

    monkeypatch.setattr(tfds, "load", fake_load)  # nothing is downloaded
    for split in ("train", "validation", "test"):
        images, labels = sources.load_image_source("mnist", split)
        assert images.shape == (3, 28, 28, 1) and labels.tolist() == [0, 1, 2]
    assert requested == [("mnist", "train[:55000]"), ("mnist", "train[55000:]"),
                         ("mnist", "test")]
