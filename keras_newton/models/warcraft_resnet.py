"""The Warcraft cost-map network: a truncated ResNet18.

The model of Vlastelica et al. (2020), reused by Petersen et al. (2021, 2024)
for the 12×12 Warcraft shortest-path benchmark: the ResNet18 stem and first
residual stage, then an adaptive max-pool to the grid and a mean over
channels::

    7×7 conv 64, stride 2 (pad 3, no bias) → BN → ReLU → 3×3 max-pool,
    stride 2 (pad 1) → 2 basic blocks (64 ch) → adaptive max-pool to g×g
    → mean over the 64 channels → [g, g] cost map.

A basic block is ``ReLU(x + BN(conv3×3(ReLU(BN(conv3×3(x))))))``
(He et al., 2016). A 96×96 map becomes 48×48, then 24×24, then 12×12.

The output is the **raw** map of the reference model: no transform (softplus,
abs, ...) is added to make costs positive. Being the channel mean of
max-pooled post-ReLU features it is non-negative anyway, but it can be exactly
zero; a caller that needs strictly positive costs adds its own transform.

BatchNorm uses PyTorch's defaults (momentum 0.1, i.e. Keras ``momentum=0.9``,
``epsilon=1e-5``). Parameters: ``7·7·C·64`` (stem conv) ``+ 4·64`` (BN)
``+ 2·(2·3·3·64·64 + 2·4·64)`` (blocks) = 158 144 for RGB input, of which
640 are BN moving statistics.

Example:
  >>> model = warcraft_resnet((96, 96, 3))
  >>> model(np.zeros([2, 96, 96, 3], np.float32)).shape
  TensorShape([2, 12, 12])

References:
  He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
  Vlastelica et al., "Differentiation of Blackbox Combinatorial Solvers",
  ICLR 2020.
"""

from __future__ import annotations

import keras

_BN = dict(momentum=0.9, epsilon=1e-5)


def _basic_block(x, name: str):
    """Two 3×3 conv + BN layers with an identity shortcut (64 channels)."""
    shortcut = x
    x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = keras.layers.BatchNormalization(**_BN, name=f"{name}_bn1")(x)
    x = keras.layers.ReLU(name=f"{name}_relu1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = keras.layers.BatchNormalization(**_BN, name=f"{name}_bn2")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def warcraft_resnet(
    input_shape=(96, 96, 3),
    grid_size: int = 12,
    *,
    name: str = "warcraft_resnet",
) -> keras.Model:
    """``[batch, H, W, C]`` maps → ``[batch, g, g]`` raw cost maps.

    Args:
      input_shape: ``(H, W, C)`` of one map; after the stride-4 stem the
        feature map must be at least ``grid_size`` on each side.
      grid_size: ``g``, cells per side of the output.
      name: model name.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in input_shape):
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 1:
        raise ValueError(f"grid_size must be a positive int, got {grid_size!r}")
    # Stem output side: ((s + 6 - 7) // 2 + 1 + 2 - 3) // 2 + 1.
    stem = [((side - 1) // 2 + 1 - 1) // 2 + 1 for side in input_shape[:2]]
    if min(stem) < grid_size:
        raise ValueError(
            f"input_shape {input_shape} gives a {stem[0]}×{stem[1]} feature map, "
            f"smaller than grid_size={grid_size}"
        )
    maps = keras.Input(input_shape, name="map")
    x = keras.layers.ZeroPadding2D(3, name="stem_pad")(maps)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(**_BN, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    # Zero padding equals PyTorch's -inf padding here: inputs are >= 0 after ReLU.
    x = keras.layers.ZeroPadding2D(1, name="pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    x = _basic_block(x, "block1")
    x = _basic_block(x, "block2")
    x = keras.layers.AdaptiveMaxPooling2D(grid_size, name="grid_pool")(x)
    costs = keras.ops.mean(x, axis=-1)
    return keras.Model(maps, costs, name=name)
