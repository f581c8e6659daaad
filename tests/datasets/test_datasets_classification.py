"""Tests for the classification data (keras_newton.datasets.classification)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_newton.datasets import classification, sources


@pytest.mark.parametrize("split", sources.SPLITS)
def test_digits_match_scikit_learn(split):
    x, y = classification.load_classification("digits", split)
    bunch = load_digits()
    part = sources.DIGITS_SPLITS[split]
    np.testing.assert_allclose(x[..., 0], bunch.images[part] / 16.0)
    np.testing.assert_array_equal(y, bunch.target[part])
    assert x.dtype == np.float32 and y.dtype == np.int32
    assert x.shape[1:] == (8, 8, 1) and 0.0 <= x.min() and x.max() == 1.0
    flat, y_flat = classification.load_classification("digits", split, flatten=True)
    assert flat.shape == (len(y), 64)
    np.testing.assert_array_equal(flat, x.reshape(len(y), -1))
    np.testing.assert_array_equal(y_flat, y)
    assert set(np.unique(y)) == set(range(10))


def _epoch(dataset):
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_dataset_is_one_shuffled_epoch_reproducible_by_seed():
    x_ref, y_ref = classification.load_classification("digits", "train", flatten=True)
    ds = classification.classification_dataset(
        "digits", "train", batch_size=128, flatten=True, seed=5
    )
    x1, y1 = _epoch(ds)
    shapes = [b[0].shape for b in ds.as_numpy_iterator()]
    assert shapes[0] == (128, 64) and shapes[-1] == (1000 - 7 * 128, 64)
    # Every example exactly once: same multiset of rows, in another order.
    order = lambda a: np.lexsort(a.T)  # noqa: E731
    np.testing.assert_array_equal(x1[order(x1)], x_ref[order(x_ref)])
    assert not np.array_equal(y1, y_ref)
    x2, _ = _epoch(ds)  # third epoch: reshuffled again
    assert not np.array_equal(x1, x2)
    x_again, _ = _epoch(
        classification.classification_dataset(
            "digits", "train", batch_size=128, flatten=True, seed=5
        )
    )
    np.testing.assert_array_equal(x1, x_again)


def test_evaluation_splits_keep_their_order():
    x_ref, y_ref = classification.load_classification("digits", "test")
    x, y = _epoch(classification.classification_dataset("digits", "test", batch_size=100))
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(source="svhn"), ValueError, "source"),
        (dict(split="dev"), ValueError, "split"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=1.5), TypeError, "batch_size"),
        (dict(flatten="yes"), TypeError, "flatten"),
    ],
)
def test_rejects_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        classification.classification_dataset(**kwargs)


@pytest.mark.parametrize(
    "source, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))]
)
def test_tfds_sources_through_mocked_tfds(tmp_path, source, shape):
    tfds = pytest.importorskip("tensorflow_datasets")
    # mock_data serves random examples of the real feature spec: no download.
    with tfds.testing.mock_data(num_examples=12):
        x, y = classification.load_classification(
            source, "validation", data_dir=str(tmp_path)
        )
        flat, _ = classification.load_classification(
            source, "test", flatten=True, data_dir=str(tmp_path)
        )
    assert x.shape == (12,) + shape and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == np.int32 and 0 <= y.min() and y.max() <= 9
    assert flat.shape == (12, int(np.prod(shape)))
