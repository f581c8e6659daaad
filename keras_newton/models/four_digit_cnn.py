"""The four-digit CNN of the ranking-supervision benchmark.

The network of the sorting literature (Grover et al., 2019; Cuturi et al.,
2019; Petersen et al., 2021, 2024) that scores one multi-digit number image:

    conv 5×5, 32 channels, ReLU → max-pool 2×2
    → conv 5×5, 64 channels, ReLU → max-pool 2×2
    → dense 64, ReLU → dense 1 (the score).

Convolutions use 'same' padding (the reference implementations pad by 2), so
a 28×112 MNIST number gives a 7×28×64 feature map and an 8×32 number from the
offline digits a 2×8×64 one; pooling floors odd sizes. On a set of ``n``
images the same scorer is applied to every image, giving ``n`` scores whose
order a differentiable sorting relaxation compares with the true order.

Parameters (``H×W×C`` input): ``(25C + 1)·32 + (25·32 + 1)·64
+ (⌊H/4⌋·⌊W/4⌋·64 + 1)·64 + 65``; 855 041 for 28×112×1.

Example:
  >>> model = four_digit_cnn((8, 32, 1))
  >>> model(np.zeros([3, 5, 8, 32, 1], np.float32)).shape
  TensorShape([3, 5])

References:
  Grover et al., "Stochastic Optimization of Sorting Networks via Continuous
  Relaxations", ICLR 2019. Petersen et al., "Differentiable Sorting Networks
  for Scalable Sorting and Ranking Supervision", ICML 2021.
"""

from __future__ import annotations

import keras


def _check_image_shape(image_shape) -> tuple[int, int, int]:
    image_shape = tuple(image_shape)
    if len(image_shape) != 3 or not all(
        isinstance(d, int) and d >= 1 for d in image_shape
    ):
        raise ValueError(
            f"image_shape must be (height, width, channels), got {image_shape}"
        )
    if image_shape[0] < 4 or image_shape[1] < 4:
        raise ValueError(
            "image_shape must be at least 4×4 (two 2×2 poolings), got "
            f"{image_shape}"
        )
    return image_shape


def four_digit_scorer(
    image_shape=(28, 112, 1), *, name: str = "four_digit_scorer"
) -> keras.Model:
    """The per-image CNN: ``[batch, H, W, C]`` images → ``[batch]`` scores.

    Args:
      image_shape: ``(H, W, C)``, at least 4×4.
      name: model name.
    """
    image_shape = _check_image_shape(image_shape)
    images = keras.Input(image_shape, name="image")
    x = keras.layers.Conv2D(32, 5, padding="same", activation="relu")(images)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dense(1)(x)
    scores = keras.layers.Reshape((), name="score")(x)
    return keras.Model(images, scores, name=name)


def four_digit_cnn(
    image_shape=(28, 112, 1),
    set_size: int | None = None,
    *,
    name: str = "four_digit_cnn",
) -> keras.Model:
    """The set model: ``[batch, n, H, W, C]`` image sets → ``[batch, n]`` scores.

    Args:
      image_shape: ``(H, W, C)`` of one number image (28×112×1 for MNIST,
        8×32×1 for the offline digits).
      set_size: ``n``, or ``None`` to accept any set size.
      name: model name.
    """
    if set_size is not None and (
        isinstance(set_size, bool) or not isinstance(set_size, int) or set_size < 1
    ):
        raise ValueError(f"set_size must be a positive int or None, got {set_size!r}")
    scorer = four_digit_scorer(image_shape)
    sets = keras.Input((set_size,) + tuple(image_shape), name="image_set")
    scores = keras.layers.TimeDistributed(scorer, name="per_image")(sets)
    return keras.Model(sets, scores, name=name)
