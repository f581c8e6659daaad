"""A small MLP scorer of multi-digit number sets: the CPU preset of the sorting benchmark.

The paper's four-digit CNN (:mod:`keras_newton.models.four_digit_cnn`) costs
most of a step on a CPU. The main job (``keras-newton-bench grid --quick``)
trains at the paper's n = 10 with 100 sets per batch, and must finish in
minutes on two cores, so it scores each number image with a multilayer
perceptron instead:

    flatten H·W·C pixels → dense 128, ReLU → dense 64, ReLU → dense 1,

applied to every image of a set. The differentiable sorter and the ranking
loss are unchanged, which is what Newton losses act on; full runs keep the
CNN (``scorer="cnn"``, the default of :mod:`keras_newton.bench.sort_task`).

Parameters (``H×W×C`` input, hidden sizes ``h1, h2``):
``(HWC + 1)·h1 + (h1 + 1)·h2 + h2 + 1``; 41 217 for 8×32×1.

Example:
  >>> model = four_digit_mlp((8, 32, 1), 5)
  >>> model(np.zeros([3, 5, 8, 32, 1], np.float32)).shape
  TensorShape([3, 5])
"""

from __future__ import annotations

from typing import Sequence

import keras


def four_digit_mlp(image_shape=(8, 32, 1), set_size: int | None = None, *,
                   hidden_units: Sequence[int] = (128, 64),
                   name: str = "four_digit_mlp") -> keras.Model:
    """The set model: ``[batch, n, H, W, C]`` image sets → ``[batch, n]`` scores.

    Args:
      image_shape: ``(H, W, C)`` of one number image.
      set_size: ``n``, or ``None`` to accept any set size.
      hidden_units: widths of the ReLU layers.
      name: model name.
    """
    image_shape = tuple(int(d) for d in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (height, width, channels), got {image_shape}")
    if set_size is not None and (isinstance(set_size, bool) or not isinstance(set_size, int)
                                 or set_size < 1):
        raise ValueError(f"set_size must be a positive int or None, got {set_size!r}")
    if not hidden_units or any(int(u) < 1 for u in hidden_units):
        raise ValueError(f"hidden_units must be positive ints, got {hidden_units!r}")
    sets = keras.Input((set_size,) + image_shape, name="image_set")
    # Dense layers act on the last axis, so each image of a set is scored alone.
    x = keras.layers.Reshape((-1, image_shape[0] * image_shape[1] * image_shape[2]))(sets)
    for units in hidden_units:
        x = keras.layers.Dense(int(units), activation="relu")(x)
    x = keras.layers.Dense(1)(x)
    scores = keras.layers.Reshape((-1,), name="score")(x)
    return keras.Model(sets, scores, name=name)


__all__ = ["four_digit_mlp"]
