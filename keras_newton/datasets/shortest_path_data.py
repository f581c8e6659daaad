"""Input pipelines for the shortest-path benchmarks (Warcraft or synthetic).

Both sources are TFDS builders with the features ``map`` (uint8
``[8g, 8g, 3]``), ``weights`` (float32 ``[g, g]`` vertex costs) and ``path``
(uint8 ``[g, g]`` 0/1 mask of the true shortest path):

* ``"synthetic_terrain"`` (offline default):
  :class:`keras_newton.datasets.synthetic_terrain.SyntheticTerrain`, generated
  locally on first use;
* ``"warcraft"``: :class:`keras_newton.datasets.warcraft.WarcraftShortestPath`,
  prepared from the manually downloaded archive (``manual_dir``).

Images are scaled to [0, 1]; Vlastelica et al. additionally standardise each
channel with training-set statistics, which a model may do in its first layer.

Example:
  >>> builder = prepare_shortest_path_builder(
  ...     "synthetic_terrain", config="small", data_dir=data_dir)
  >>> train = shortest_path_dataset(builder, "train", batch_size=70)
  >>> maps, paths = next(iter(train))   # [70, 96, 96, 3], [70, 12, 12]
"""

from __future__ import annotations

import tensorflow as tf

SOURCES = ("synthetic_terrain", "warcraft")
TARGETS = ("path", "weights", "all")


def prepare_shortest_path_builder(
    source: str = "synthetic_terrain",
    *,
    config=None,
    data_dir: str | None = None,
    manual_dir: str | None = None,
):
    """Returns a prepared TFDS builder of a shortest-path data set.

    Args:
      source: ``"synthetic_terrain"`` or ``"warcraft"``.
      config: a config name or ``BuilderConfig``; default ``"small"``
        (synthetic) or ``"12x12"`` (Warcraft).
      data_dir: TFDS data directory (``None``: TFDS' default).
      manual_dir: folder with the extracted Warcraft archive (Warcraft only).

    Returns:
      The builder, after ``download_and_prepare`` (a no-op once prepared).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    # Lazy: importing a builder module imports TFDS.
    import tensorflow_datasets as tfds

    if source == "synthetic_terrain":
        from keras_newton.datasets.synthetic_terrain import SyntheticTerrain

        builder = SyntheticTerrain(data_dir=data_dir, config=config or "small")
    else:
        from keras_newton.datasets.warcraft import WarcraftShortestPath

        builder = WarcraftShortestPath(data_dir=data_dir, config=config or "12x12")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir,
            compute_stats=tfds.download.ComputeStatsMode.SKIP,
        )
    )
    return builder


def _convert(example: dict, targets: str):
    maps = tf.cast(example["map"], tf.float32) / 255.0
    path = tf.cast(example["path"], tf.float32)
    weights = tf.cast(example["weights"], tf.float32)
    if targets == "path":
        return maps, path
    if targets == "weights":
        return maps, weights
    return {"map": maps, "weights": weights, "path": path}


def shortest_path_dataset(
    builder,
    split: str = "train",
    *,
    batch_size: int = 70,
    targets: str = "path",
    shuffle: bool | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """A batched pipeline over a prepared shortest-path builder.

    Args:
      builder: from :func:`prepare_shortest_path_builder` (or any prepared
        builder with the features above).
      split: ``"train"``, ``"validation"`` or ``"test"`` (or a TFDS slice).
      batch_size: maps per batch (paper: 70).
      targets: ``"path"`` → ``(maps, paths)``, ``"weights"`` →
        ``(maps, weights)``, ``"all"`` → dicts ``{"map", "weights", "path"}``;
        everything float32, maps in [0, 1].
      shuffle: reshuffle every epoch (seeded); default only for ``"train"``.
      seed: shuffle seed.

    Returns:
      A ``tf.data.Dataset``; one pass is one epoch.
    """
    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    import tensorflow_datasets as tfds  # Lazy, as above.

    if shuffle is None:
        shuffle = split == "train"
    dataset = builder.as_dataset(
        split=split,
        shuffle_files=shuffle,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    if shuffle:
        dataset = dataset.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    return (
        dataset.map(lambda ex: _convert(ex, targets), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
