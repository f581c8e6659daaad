"""Multi-digit number sets for ranking supervision.

The benchmark of the sorting literature (Grover et al., 2019; Cuturi et al.,
2019; Petersen et al., 2021, 2022, 2024): every item is a ``k``-digit number
(``k = 4`` by default) drawn as ``k`` handwritten digit images concatenated
horizontally, and its label is the number

.. math::

    v = \\sum_{j=0}^{k-1} d_j \\, 10^{k-1-j},

where ``d_0`` is the leftmost digit. A *sample* is a set of ``n`` such items;
a network scores each image and only the relative order of the ``n`` labels
supervises it. Digit images are drawn uniformly with replacement from one
split of a source (see :mod:`keras_newton.datasets.sources`): MNIST gives
28×112 number images, the offline default (scikit-learn's 8×8 digits) 8×32.

Sets are generated on the fly and statelessly: set ``i`` of a stream with
seed ``s`` draws its digit indices with
``tf.random.stateless_uniform(seed=[s, i])``, so a stream is a pure function of
its seed (and of the TensorFlow version), restarts reproduce it, and a finite
stream (``num_sets``) yields the same sets on every pass, which makes a fixed
evaluation set. Values may tie (two equal numbers in one set) with
probability about ``n² / (2 · 10^k)``; the published benchmark keeps them.

References:
  Grover et al., "Stochastic Optimization of Sorting Networks via Continuous
  Relaxations", ICLR 2019. Petersen et al., "Differentiable Sorting Networks
  for Scalable Sorting and Ranking Supervision", ICML 2021.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_newton.datasets import sources


def compose_numbers(
    digit_images: tf.Tensor, digit_labels: tf.Tensor, indices: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Builds number images and their values from digit indices.

    Args:
      digit_images: ``[N, H, W, C]`` digit images.
      digit_labels: ``[N]`` integer digit labels in 0..9.
      indices: ``[..., k]`` integer indices into the digits; entry ``j`` of the
        last axis is the ``j``-th digit from the left.

    Returns:
      ``(images, values)``: ``[..., H, k·W, C]`` in the dtype of
      ``digit_images`` and float32 ``[...]`` numbers.

    Example:
      >>> images = tf.zeros([10, 8, 8, 1]); labels = tf.range(10)
      >>> x, v = compose_numbers(images, labels, tf.constant([[1, 2, 3, 4]]))
      >>> x.shape, v.numpy()
      (TensorShape([1, 8, 32, 1]), array([1234.], dtype=float32))
    """
    digit_images = tf.convert_to_tensor(digit_images)
    indices = tf.convert_to_tensor(indices)
    if digit_images.shape.rank != 4:
        raise ValueError(
            "digit_images must have shape [N, H, W, C], got "
            f"{digit_images.shape}"
        )
    if not indices.dtype.is_integer:
        raise TypeError(f"indices must be integers, got {indices.dtype}")
    rank = indices.shape.rank
    if rank is None or rank < 1 or indices.shape[-1] is None:
        raise ValueError(
            f"indices must have shape [..., k] with static k, got {indices.shape}"
        )
    num_digits = indices.shape[-1]
    _, height, width, channels = digit_images.shape
    gathered = tf.gather(digit_images, indices)  # [..., k, H, W, C]
    # Put the digit axis next to the width axis, then merge them.
    perm = list(range(rank - 1)) + [rank, rank - 1, rank + 1, rank + 2]
    images = tf.reshape(
        tf.transpose(gathered, perm),
        tf.concat([tf.shape(indices)[:-1], [height, num_digits * width, channels]], 0),
    )
    digits = tf.cast(tf.gather(digit_labels, indices), tf.float32)
    place_values = tf.constant(
        [10.0 ** (num_digits - 1 - j) for j in range(num_digits)], tf.float32
    )
    return images, tf.reduce_sum(digits * place_values, axis=-1)


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def multi_digit_dataset(
    split: str = "train",
    *,
    set_size: int = 5,
    num_digits: int = 4,
    batch_size: int = 100,
    num_sets: int | None = None,
    seed: int = 0,
    source: str = "digits",
    data_dir: str | None = None,
    digit_arrays: tuple[np.ndarray, np.ndarray] | None = None,
) -> tf.data.Dataset:
    """A stream of batched multi-digit number sets, ready for ``model.fit``.

    Args:
      split: ``"train"``, ``"validation"`` or ``"test"`` of the digit source.
      set_size: items per set, ``n >= 2``.
      num_digits: digits per number, ``k``.
      batch_size: sets per batch (the last batch of a finite stream may be
        smaller).
      num_sets: total sets; ``None`` streams forever (use ``steps_per_epoch``).
      seed: stream seed; equal seeds give equal streams.
      source: ``"digits"`` (offline default) or ``"mnist"`` (TFDS).
      data_dir: TFDS data directory for ``"mnist"``.
      digit_arrays: optional ``(images [N, H, W, C], labels [N])`` used instead
        of ``source``/``split``.

    Returns:
      A dataset of ``(images, values)``: float32 ``[batch, n, H, k·W, C]`` and
      float32 ``[batch, n]``.

    Example:
      >>> ds = multi_digit_dataset("train", set_size=5, batch_size=2, seed=1)
      >>> images, values = next(iter(ds))
      >>> images.shape, values.shape
      (TensorShape([2, 5, 8, 32, 1]), TensorShape([2, 5]))
    """
    _check_positive_int("set_size", set_size, 2)
    _check_positive_int("num_digits", num_digits)
    _check_positive_int("batch_size", batch_size)
    if num_sets is not None:
        _check_positive_int("num_sets", num_sets)
    _check_positive_int("seed", seed, minimum=-(2**63))
    if digit_arrays is None:
        sources.check_source(source, ("digits", "mnist"))
        digit_arrays = sources.load_image_source(source, split, data_dir)
    images, labels = digit_arrays
    images = tf.constant(np.asarray(images, np.float32))
    labels = tf.constant(np.asarray(labels, np.int32))
    if images.shape.rank != 4 or labels.shape.rank != 1:
        raise ValueError(
            "digit_arrays must be (images [N, H, W, C], labels [N]), got "
            f"{images.shape} and {labels.shape}"
        )
    return (
        index_dataset(images.shape[0], set_size=set_size, num_digits=num_digits,
                      batch_size=batch_size, seed=seed, num_sets=num_sets)
        .map(
            lambda idx: compose_numbers(images, labels, idx),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def index_dataset(num_images: int, *, set_size: int, num_digits: int, batch_size: int,
                  seed: int, num_sets: int | None = None) -> tf.data.Dataset:
    """Batches of digit indices ``[batch, n, k]``: set ``i`` drawn with seed ``[s, i]``.

    The sets of :func:`multi_digit_dataset` before their images are composed.
    """

    def draw_indices(index):
        stream_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return tf.random.stateless_uniform(
            [set_size, num_digits], stream_seed, 0, num_images, tf.int32
        )

    def draw_batch(indices):
        # One map call per batch (not per set), several batches in flight:
        # the same sets as mapping draw_indices over single indices, faster.
        return tf.map_fn(draw_indices, indices, fn_output_signature=tf.int32)

    dataset = tf.data.Dataset.counter(dtype=tf.int64)
    if num_sets is not None:
        dataset = dataset.take(num_sets)
    return dataset.batch(batch_size).map(
        draw_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def draw_index_batches(num_images: int, num_batches: int, *, set_size: int,
                       num_digits: int = 4, batch_size: int = 100,
                       seed: int = 0) -> np.ndarray:
    """The first ``num_batches`` index batches of a stream, as one int32 array.

    Drawing the indices is most of the cost of a stream; a benchmark that
    trains many short runs on the same stream draws them once and composes
    images from them (:func:`compose_index_batches`), with the same sets.

    Returns:
      int32 ``[num_batches, batch_size, set_size, num_digits]``.
    """
    _check_positive_int("num_batches", num_batches)
    batches = index_dataset(num_images, set_size=set_size, num_digits=num_digits,
                            batch_size=batch_size, seed=seed,
                            num_sets=num_batches * batch_size)
    return np.stack(list(batches.as_numpy_iterator()))


def compose_index_batches(digit_arrays: tuple[np.ndarray, np.ndarray],
                          index_batches: np.ndarray) -> tf.data.Dataset:
    """A dataset of ``(images, values)`` batches from precomputed index batches."""
    images = tf.constant(np.asarray(digit_arrays[0], np.float32))
    labels = tf.constant(np.asarray(digit_arrays[1], np.int32))
    return (
        tf.data.Dataset.from_tensor_slices(index_batches)
        .map(lambda idx: compose_numbers(images, labels, idx),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def multi_digit_arrays(
    split: str = "test",
    *,
    num_sets: int = 1000,
    set_size: int = 5,
    num_digits: int = 4,
    seed: int = 0,
    source: str = "digits",
    data_dir: str | None = None,
    digit_arrays: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed evaluation set of number sets as NumPy arrays.

    The same sets as the first ``num_sets`` of ``multi_digit_dataset`` with
    equal arguments (its stream is stateless, so batching does not matter).

    Returns:
      ``(images, values)``: float32 ``[num_sets, n, H, k·W, C]`` and float32
      ``[num_sets, n]``.

    Example:
      >>> x, v = multi_digit_arrays("validation", num_sets=3, set_size=4)
      >>> x.shape, v.shape
      ((3, 4, 8, 32, 1), (3, 4))
    """
    _check_positive_int("num_sets", num_sets)
    dataset = multi_digit_dataset(
        split,
        set_size=set_size,
        num_digits=num_digits,
        batch_size=min(num_sets, 256),
        num_sets=num_sets,
        seed=seed,
        source=source,
        data_dir=data_dir,
        digit_arrays=digit_arrays,
    )
    batches = list(dataset.as_numpy_iterator())
    return (
        np.concatenate([images for images, _ in batches]),
        np.concatenate([values for _, values in batches]),
    )
