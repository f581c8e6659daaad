"""Labelled image sources shared by the benchmark pipelines.

Three sources, all returned as in-memory NumPy arrays scaled to [0, 1]:

* ``"digits"`` (the offline default): the real 8×8 handwritten digits that
  scikit-learn ships (``sklearn.datasets.load_digits``, 1797 images, 16 grey
  levels, divided by 16). They are split *deterministically and disjointly* by
  position in the file, the way MNIST's validation set is carved out of its
  training set: ``train`` = images ``[0, 1000)``, ``validation`` = ``[1000,
  1300)``, ``test`` = ``[1300, 1797)``.
* ``"mnist"``: ``tfds.load("mnist")``; ``train`` = ``train[:55000]``,
  ``validation`` = ``train[55000:]``, ``test`` = ``test`` (the split used by
  the sorting literature).
* ``"cifar10"``: ``tfds.load("cifar10")``; ``train`` = ``train[:45000]``,
  ``validation`` = ``train[45000:]``, ``test`` = ``test``.

The TFDS sources download on first use (``data_dir`` selects where TFDS keeps
its files) and are never touched unless asked for; ``tensorflow_datasets`` and
scikit-learn are imported lazily so importing this module stays cheap.
"""

from __future__ import annotations

import numpy as np

SOURCES = ("digits", "mnist", "cifar10")
SPLITS = ("train", "validation", "test")

# Positions in ``sklearn.datasets.load_digits()`` (1797 images).
DIGITS_SPLITS = {
    "train": slice(0, 1000),
    "validation": slice(1000, 1300),
    "test": slice(1300, 1797),
}

TFDS_SPLITS = {
    "mnist": {
        "train": "train[:55000]",
        "validation": "train[55000:]",
        "test": "test",
    },
    "cifar10": {
        "train": "train[:45000]",
        "validation": "train[45000:]",
        "test": "test",
    },
}


def check_source(source: str, allowed: tuple[str, ...] = SOURCES) -> None:
    """Raises ValueError naming ``source`` unless it is one of ``allowed``."""
    if source not in allowed:
        raise ValueError(
            f"source must be one of {allowed}, got {source!r}"
        )


def check_split(split: str) -> None:
    """Raises ValueError naming ``split`` unless it is a known split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def load_digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split of scikit-learn's bundled 8×8 handwritten digits.

    Args:
      split: ``"train"``, ``"validation"`` or ``"test"`` (see module doc).

    Returns:
      ``(images, labels)``: float32 ``[N, 8, 8, 1]`` in [0, 1] and int32 ``[N]``.
    """
    check_split(split)
    from sklearn.datasets import load_digits  # Lazy: keeps imports cheap.

    bunch = load_digits()
    part = DIGITS_SPLITS[split]
    images = bunch.images[part].astype(np.float32) / 16.0
    labels = bunch.target[part].astype(np.int32)
    return images[..., None], labels


def load_tfds_split(
    name: str, split: str, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split of a TFDS image classification set into memory.

    Args:
      name: ``"mnist"`` or ``"cifar10"``.
      split: ``"train"``, ``"validation"`` or ``"test"`` (see module doc).
      data_dir: TFDS data directory (``None``: TFDS' default).

    Returns:
      ``(images, labels)``: float32 ``[N, H, W, C]`` in [0, 1] and int32 ``[N]``.
    """
    check_source(name, tuple(TFDS_SPLITS))
    check_split(split)
    import tensorflow_datasets as tfds  # Lazy: TFDS is slow to import.

    dataset = tfds.load(
        name,
        split=TFDS_SPLITS[name][split],
        as_supervised=True,
        data_dir=data_dir,
    )
    images, labels = [], []
    for image_batch, label_batch in tfds.as_numpy(dataset.batch(4096)):
        images.append(image_batch)
        labels.append(label_batch)
    images = np.concatenate(images).astype(np.float32) / 255.0
    return images, np.concatenate(labels).astype(np.int32)


def load_image_source(
    source: str = "digits", split: str = "train", data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads ``(images [N, H, W, C] float32 in [0, 1], labels [N] int32)``.

    Args:
      source: ``"digits"`` (offline, scikit-learn), ``"mnist"`` or
        ``"cifar10"`` (TFDS).
      split: ``"train"``, ``"validation"`` or ``"test"``.
      data_dir: TFDS data directory, ignored for ``"digits"``.

    Example:
      >>> images, labels = load_image_source("digits", "validation")
      >>> images.shape, labels.shape
      ((300, 8, 8, 1), (300,))
    """
    check_source(source)
    if source == "digits":
        return load_digits_split(split)
    return load_tfds_split(source, split, data_dir)
