"""Classification models M1–M5 of the Newton-loss classification study.

* **M1, M2, M3**: multilayer perceptrons of 5 dense layers — 4 hidden layers
  of width 100, 400 and 1600 with ReLU, then a linear output layer.
* **M4, M5**: LeNet-5 (LeCun et al., 1998) with sigmoid (M4) or ReLU (M5)
  activations.

All return logits (no softmax), for
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)`` or its
Newton-loss wrapper. The MLPs flatten their input first, so they accept
images or vectors.

LeNet-5 keeps its original geometry on a 32×32 field: smaller inputs are
zero-padded to 32×32 and centred, exactly as LeCun et al. centred 28×28
MNIST digits in 32×32 (so the 8×8 offline digits work too)::

    conv 5×5, 6 → pool 2 → conv 5×5, 16 → pool 2 → dense 120 → dense 84
    → dense classes

with max pooling by default (``pooling="average"`` for the original
sub-sampling). Parameters for ``C`` input channels and ``K`` classes:
``(25C + 1)·6 + (150 + 1)·16 + (400 + 1)·120 + (120 + 1)·84 + (84 + 1)·K``
(61 706 for MNIST).

Example:
  >>> model = classification_model("M2", (8, 8, 1))
  >>> model(np.zeros([4, 8, 8, 1], np.float32)).shape
  TensorShape([4, 10])

References:
  LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to
  document recognition", Proc. IEEE 1998.
"""

from __future__ import annotations

import keras

MODEL_SPECS = {
    "M1": ("mlp", 100),
    "M2": ("mlp", 400),
    "M3": ("mlp", 1600),
    "M4": ("lenet5", "sigmoid"),
    "M5": ("lenet5", "relu"),
}
_LENET_FIELD = 32


def _check_shape(input_shape, minimum_rank: int = 1) -> tuple[int, ...]:
    input_shape = tuple(input_shape)
    if len(input_shape) < minimum_rank or not all(
        isinstance(d, int) and d >= 1 for d in input_shape
    ):
        raise ValueError(f"input_shape must be positive ints, got {input_shape}")
    return input_shape


def _check_classes(num_classes) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")


def mlp_classifier(
    input_shape,
    width: int,
    *,
    num_layers: int = 5,
    num_classes: int = 10,
    activation: str = "relu",
    name: str | None = None,
) -> keras.Model:
    """``num_layers`` dense layers: ``num_layers - 1`` hidden of ``width``, 1 output.

    Args:
      input_shape: shape of one example (flattened first).
      width: hidden units per layer.
      num_layers: dense layers including the output layer (>= 2).
      num_classes: output logits.
      activation: hidden activation.
      name: model name (default ``mlp_<width>``).
    """
    input_shape = _check_shape(input_shape)
    _check_classes(num_classes)
    for arg, value, low in (("width", width, 1), ("num_layers", num_layers, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
    inputs = keras.Input(input_shape, name="x")
    x = keras.layers.Flatten()(inputs)
    for _ in range(num_layers - 1):
        x = keras.layers.Dense(width, activation=activation)(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name or f"mlp_{width}")


def lenet5(
    input_shape=(28, 28, 1),
    *,
    num_classes: int = 10,
    activation: str = "relu",
    pooling: str = "max",
    name: str = "lenet5",
) -> keras.Model:
    """LeNet-5 on ``[batch, H, W, C]`` images (padded to at least 32×32).

    Args:
      input_shape: ``(H, W, C)``.
      num_classes: output logits.
      activation: ``"relu"`` or ``"sigmoid"`` (any Keras activation works).
      pooling: ``"max"`` or ``"average"``.
      name: model name.
    """
    input_shape = _check_shape(input_shape, 3)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    _check_classes(num_classes)
    pools = {"max": keras.layers.MaxPooling2D, "average": keras.layers.AveragePooling2D}
    if pooling not in pools:
        raise ValueError(f"pooling must be one of {tuple(pools)}, got {pooling!r}")
    images = keras.Input(input_shape, name="image")
    x = images
    pad = [max(0, _LENET_FIELD - side) for side in input_shape[:2]]
    if any(pad):
        x = keras.layers.ZeroPadding2D(
            ((pad[0] // 2, pad[0] - pad[0] // 2), (pad[1] // 2, pad[1] - pad[1] // 2))
        )(x)
    x = keras.layers.Conv2D(6, 5, activation=activation)(x)
    x = pools[pooling](2)(x)
    x = keras.layers.Conv2D(16, 5, activation=activation)(x)
    x = pools[pooling](2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(120, activation=activation)(x)
    x = keras.layers.Dense(84, activation=activation)(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(images, logits, name=name)


def classification_model(
    model_name: str, input_shape, *, num_classes: int = 10
) -> keras.Model:
    """Builds model ``"M1"`` … ``"M5"`` (see module doc) for ``input_shape``.

    The MLPs take images or vectors; LeNet-5 needs ``(H, W, C)`` images.
    """
    if model_name not in MODEL_SPECS:
        raise ValueError(
            f"model_name must be one of {tuple(MODEL_SPECS)}, got {model_name!r}"
        )
    kind, option = MODEL_SPECS[model_name]
    if kind == "mlp":
        return mlp_classifier(input_shape, option, num_classes=num_classes, name=model_name)
    return lenet5(input_shape, num_classes=num_classes, activation=option, name=model_name)
