"""Image classification data for the Newton-loss classification experiments.

Sources (see :mod:`keras_newton.datasets.sources` for the exact splits):
``"digits"`` — scikit-learn's bundled 8×8 handwritten digits, the offline
default; ``"mnist"`` and ``"cifar10"`` — loaded with ``tfds.load`` (they
download on first use). Images are float32 in [0, 1], either as images
``[N, H, W, C]`` (for LeNet-5) or flattened to ``[N, H·W·C]`` (for the MLPs);
labels are int32 class ids, suited to
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``.

Example:
  >>> x, y = load_classification("digits", "train", flatten=True)
  >>> x.shape, y.shape
  ((1000, 64), (1000,))
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_newton.datasets import sources

NUM_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10}


def load_classification(
    source: str = "digits",
    split: str = "train",
    *,
    flatten: bool = False,
    data_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split as NumPy arrays.

    Args:
      source: ``"digits"``, ``"mnist"`` or ``"cifar10"``.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      flatten: return ``[N, H·W·C]`` vectors instead of ``[N, H, W, C]`` images.
      data_dir: TFDS data directory (TFDS sources only).

    Returns:
      ``(x, y)``: float32 images or vectors in [0, 1] and int32 labels ``[N]``.
    """
    if not isinstance(flatten, bool):
        raise TypeError(f"flatten must be a bool, got {flatten!r}")
    images, labels = sources.load_image_source(source, split, data_dir)
    if flatten:
        images = images.reshape(images.shape[0], -1)
    return images, labels


def classification_dataset(
    source: str = "digits",
    split: str = "train",
    *,
    batch_size: int = 100,
    flatten: bool = False,
    shuffle: bool | None = None,
    seed: int = 0,
    data_dir: str | None = None,
) -> tf.data.Dataset:
    """A batched ``(x, y)`` dataset for ``model.fit`` / ``model.evaluate``.

    Args:
      source: ``"digits"``, ``"mnist"`` or ``"cifar10"``.
      split: ``"train"``, ``"validation"`` or ``"test"``.
      batch_size: examples per batch (the last batch may be smaller).
      flatten: yield flattened vectors (for the MLPs).
      shuffle: reshuffle every epoch with ``seed``; default: only ``"train"``.
      seed: shuffle seed, so a run's batch order is reproducible.
      data_dir: TFDS data directory (TFDS sources only).

    Returns:
      A dataset of ``(x float32 [b, ...], y int32 [b])``; one pass is one epoch.

    Example:
      >>> ds = classification_dataset("digits", "test", batch_size=32)
      >>> x, y = next(iter(ds)); x.shape
      TensorShape([32, 8, 8, 1])
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"batch_size must be an int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x, y = load_classification(source, split, flatten=flatten, data_dir=data_dir)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle is None:
        shuffle = split == "train"
    if shuffle:
        dataset = dataset.shuffle(
            len(y), seed=seed, reshuffle_each_iteration=True
        )
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
