"""Tests for the benchmark models (keras_newton.models)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_mode
from keras_newton import models


def conv_params(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def dense_params(n_in, n_out):
    return n_in * n_out + n_out


# --- four-digit CNN ----------------------------------------------------------


@pytest.mark.parametrize("image_shape", [(28, 112, 1), (8, 32, 1), (9, 13, 2)])
def test_four_digit_cnn_shapes_and_parameter_count(image_shape):
    h, w, c = image_shape
    model = models.four_digit_cnn(image_shape)
    expected = (
        conv_params(5, c, 32) + conv_params(5, 32, 64)
        + dense_params((h // 4) * (w // 4) * 64, 64) + dense_params(64, 1)
    )
    assert model.count_params() == expected
    assert models.four_digit_scorer(image_shape).count_params() == expected
    assert model(np.zeros((2, 5) + image_shape, np.float32)).shape == (2, 5)
    assert models.four_digit_cnn(image_shape, set_size=3).output_shape == (None, 3)


def test_four_digit_cnn_mnist_count_is_the_documented_one():
    assert models.four_digit_cnn((28, 112, 1)).count_params() == 855_041


def test_four_digit_cnn_scores_each_image_independently(mode, rng):
    model = models.four_digit_cnn((8, 32, 1))
    scorer = model.get_layer("per_image").layer
    sets = rng.random((2, 4, 8, 32, 1)).astype(np.float32)
    scores = run_in_mode(mode, lambda x: model(x), tf.constant(sets))
    one_by_one = scorer(sets.reshape(8, 8, 32, 1)).numpy().reshape(2, 4)
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-5, atol=1e-6)
    # Permuting a set permutes its scores (what ranking supervision needs).
    perm = np.array([2, 0, 3, 1])
    permuted = model(sets[:, perm]).numpy()
    np.testing.assert_allclose(permuted, scores[:, perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(image_shape=(3, 32, 1)), "image_shape"),
        (dict(image_shape=(8, 32)), "image_shape"),
        (dict(image_shape=(8, 32, 1), set_size=0), "set_size"),
    ],
)
def test_four_digit_cnn_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        models.four_digit_cnn(**kwargs)


def test_four_digit_cnn_fits_on_the_number_sets():
    from keras_newton.datasets import multi_digit_dataset

    dataset = multi_digit_dataset("train", set_size=3, batch_size=4, seed=0)
    dataset = dataset.map(lambda x, v: (x, v / 10000.0))
    model = models.four_digit_cnn((8, 32, 1))
    # Eager: two steps do not repay tracing the train function.
    model.compile(optimizer="adam", loss="mse", run_eagerly=True)
    history = model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_four_digit_mlp_parameter_count_and_shapes():
    model = models.four_digit_mlp((8, 32, 1))
    assert model.count_params() == 41_217  # the documented count
    assert model.count_params() == dense_params(256, 128) + dense_params(128, 64) + \
        dense_params(64, 1)
    assert model(np.zeros((2, 5, 8, 32, 1), np.float32)).shape == (2, 5)
    assert models.four_digit_mlp((8, 32, 1), 10).output_shape == (None, 10)


def test_four_digit_mlp_scores_each_image_independently(mode, rng):
    model = models.four_digit_mlp((8, 32, 1), hidden_units=(16,))
    sets = rng.random((2, 4, 8, 32, 1)).astype(np.float32)
    scores = run_in_mode(mode, lambda x: model(x), tf.constant(sets))
    kernel_1, bias_1, kernel_2, bias_2 = [w.numpy() for w in model.weights]
    pixels = sets.reshape(2, 4, 256)
    reference = (np.maximum(pixels @ kernel_1 + bias_1, 0) @ kernel_2 + bias_2)[..., 0]
    np.testing.assert_allclose(scores, reference, rtol=1e-5, atol=1e-6)
    perm = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(model(sets[:, perm]).numpy(), scores[:, perm], rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("kwargs, name", [
    (dict(image_shape=(8, 32)), "image_shape"),
    (dict(set_size=0), "set_size"),
    (dict(hidden_units=(0,)), "hidden_units"),
])
def test_four_digit_mlp_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        models.four_digit_mlp(**kwargs)


# --- Warcraft ResNet ---------------------------------------------------------


def test_warcraft_resnet_shapes_and_parameter_count():
    model = models.warcraft_resnet((96, 96, 3))
    assert model.output_shape == (None, 12, 12)
    bn = 4 * 64  # gamma, beta, moving mean, moving variance
    block = 2 * conv_params(3, 64, 64, bias=False) + 2 * bn
    assert model.count_params() == conv_params(7, 3, 64, bias=False) + bn + 2 * block
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 5 * 2 * 64
    assert models.warcraft_resnet((144, 144, 3), 18).output_shape == (None, 18, 18)
    with pytest.raises(ValueError, match="grid_size"):
        models.warcraft_resnet((40, 40, 3), 12)


def _reference_resnet(model, maps):
    """The same network written with raw TF ops and PyTorch's padding rules."""
    def bn(x, layer):
        gamma, beta, mean, var = layer.get_weights()
        return gamma * (x - mean) / np.sqrt(var + 1e-5) + beta

    def conv(x, layer, pad):
        (kernel,) = layer.get_weights()
        stride = layer.strides[0]
        x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return tf.nn.conv2d(x, kernel, stride, "VALID")

    layer = model.get_layer
    x = tf.nn.relu(bn(conv(maps, layer("stem_conv"), 3), layer("stem_bn")))
    x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-np.inf)
    x = tf.nn.max_pool2d(x, 3, 2, "VALID")
    for block in ("block1", "block2"):
        y = tf.nn.relu(bn(conv(x, layer(f"{block}_conv1"), 1), layer(f"{block}_bn1")))
        y = bn(conv(y, layer(f"{block}_conv2"), 1), layer(f"{block}_bn2"))
        x = tf.nn.relu(x + y)
    x = tf.nn.max_pool2d(x, 2, 2, "VALID")  # adaptive 24 -> 12 bins are 2x2
    return tf.reduce_mean(x, axis=-1)


def test_warcraft_resnet_matches_a_raw_op_reference(mode, rng):
    model = models.warcraft_resnet((96, 96, 3))
    for layer in model.layers:  # non-trivial inference statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([
                gamma + rng.normal(0, 0.1, 64), beta + rng.normal(0, 0.1, 64),
                rng.normal(0, 0.1, 64), rng.uniform(0.5, 2.0, 64),
            ])
    maps = rng.random((2, 96, 96, 3)).astype(np.float32)
    costs = run_in_mode(mode, lambda x: model(x, training=False), tf.constant(maps))
    expected = _reference_resnet(model, tf.constant(maps)).numpy()
    assert costs.shape == (2, 12, 12)
    np.testing.assert_allclose(costs, expected, rtol=1e-4, atol=1e-5)
    # No positivity transform is added, yet the channel mean of post-ReLU
    # features is non-negative by construction.
    assert costs.min() >= 0.0


# --- classification models ---------------------------------------------------


def mlp_params(n_in, width, classes=10, layers=5):
    hidden = (layers - 2) * dense_params(width, width)
    return dense_params(n_in, width) + hidden + dense_params(width, classes)


def lenet_params(channels, classes=10):
    return (
        conv_params(5, channels, 6) + conv_params(5, 6, 16) + dense_params(400, 120)
        + dense_params(120, 84) + dense_params(84, classes)
    )


@pytest.mark.parametrize(
    "input_shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3)], ids=["digits", "mnist", "cifar10"]
)
def test_classification_models_shapes_and_parameter_counts(input_shape):
    n_in, channels = int(np.prod(input_shape)), input_shape[-1]
    expected = {
        "M1": mlp_params(n_in, 100), "M2": mlp_params(n_in, 400),
        "M3": mlp_params(n_in, 1600), "M4": lenet_params(channels),
        "M5": lenet_params(channels),
    }
    x = np.zeros((3,) + input_shape, np.float32)
    for name, count in expected.items():
        model = models.classification_model(name, input_shape)
        assert model.count_params() == count, name
        assert model(x).shape == (3, 10)
    assert models.lenet5((28, 28, 1)).count_params() == 61_706


def test_mlps_accept_flat_vectors_and_lenet_activations_differ(rng):
    model = models.classification_model("M2", (64,))
    assert model(np.zeros((2, 64), np.float32)).shape == (2, 10)
    m4 = models.classification_model("M4", (8, 8, 1))
    m5 = models.classification_model("M5", (8, 8, 1))
    activations = {
        layer.activation.__name__ for layer in m4.layers if isinstance(layer, keras.layers.Conv2D)
    }
    assert activations == {"sigmoid"}
    assert m5.get_layer(index=2).activation.__name__ == "relu"
    average = models.lenet5((28, 28, 1), pooling="average")
    assert any(isinstance(layer, keras.layers.AveragePooling2D) for layer in average.layers)


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: models.classification_model("M6", (8, 8, 1)), "model_name"),
        (lambda: models.lenet5((8, 8)), "input_shape"),
        (lambda: models.lenet5((8, 8, 1), pooling="min"), "pooling"),
        (lambda: models.lenet5((8, 8, 1), num_classes=1), "num_classes"),
        (lambda: models.mlp_classifier((64,), 0), "width"),
        (lambda: models.mlp_classifier((64,), 10, num_layers=1), "num_layers"),
    ],
)
def test_classification_models_reject_bad_arguments(build, name):
    with pytest.raises(ValueError, match=name):
        build()


def test_lenet_fits_on_digits():
    from keras_newton.datasets import classification_dataset

    model = models.classification_model("M5", (8, 8, 1))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    data = classification_dataset("digits", "validation", batch_size=100)
    before = model.evaluate(data, verbose=0)
    model.fit(data, epochs=3, verbose=0, shuffle=False)
    assert model.evaluate(data, verbose=0) < 0.8 * before


# --- saving ------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: models.four_digit_cnn((8, 32, 1)), (2, 3, 8, 32, 1)),
        (lambda: models.warcraft_resnet((48, 48, 3), 6), (2, 48, 48, 3)),
        (lambda: models.classification_model("M4", (8, 8, 1)), (2, 8, 8, 1)),
    ],
    ids=["four_digit_cnn", "warcraft_resnet", "lenet5"],
)
def test_models_round_trip_through_keras_saving(tmp_path, rng, build, shape):
    model = build()
    x = rng.random(shape).astype(np.float32)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())
    assert [type(layer) for layer in restored.layers] == [type(layer) for layer in model.layers]
    for saved, loaded in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
