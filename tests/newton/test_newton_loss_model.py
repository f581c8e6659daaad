"""Tests of NewtonLossModel's two-stage train_step inside fit()."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn


def _data(rng, n=48):
    x = rng.normal(size=(n, 4)).astype("float32")
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 0.8).astype(int)
    return x, np.eye(3, dtype="float32")[labels]


def _functional(curvature="hessian", damping=1e-3, **kwargs):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    return kn.NewtonLossModel(inputs, keras.layers.Dense(3)(hidden),
                              curvature=curvature, damping=damping, **kwargs)


def _model_step_by_hand(model, x, y, curvature, damping, learning_rate):
    """Reference: (3a) newton_target then (3b) one SGD step, written out."""
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    weights = [tf.Variable(w) for w in model.get_weights()]
    w1, b1, w2, b2 = weights
    outputs = tf.matmul(tf.tanh(x @ w1 + b1), w2) + b2
    target = kn.newton_target(ce, y, outputs, curvature=curvature, damping=damping)
    with tf.GradientTape() as tape:
        outputs = tf.matmul(tf.tanh(x @ w1 + b1), w2) + b2
        loss = tf.reduce_mean(0.5 * tf.reduce_sum(tf.square(target - outputs), -1))
    gradients = tape.gradient(loss, weights)
    return [w.numpy() - learning_rate * g.numpy() for w, g in zip(weights, gradients)]


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("curvature", kn.CURVATURES)
def test_train_step_equals_two_stage_update(curvature, jit_compile, rng):
    x, y = _data(rng, n=16)
    keras.utils.set_random_seed(1)
    model = _functional(curvature, damping=0.05)
    expected = _model_step_by_hand(model, x, y, curvature, 0.05, 0.1)
    model.compile(keras.optimizers.SGD(0.1), loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_fit_logs_original_loss_newton_loss_and_metrics(rng):
    x, y = _data(rng)
    keras.utils.set_random_seed(0)
    model = _functional("fisher", damping=0.1)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.05), loss=ce, metrics=["accuracy"], jit_compile=True)
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0).history
    assert set(history) >= {"loss", "newton_loss", "accuracy"}
    assert history["loss"][-1] < history["loss"][0]
    # 'loss' is the original cross-entropy: evaluating gives the same scale.
    evaluated = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(evaluated, float(ce(y, model.predict(x, verbose=0))), rtol=1e-4)


def test_sample_weight_zero_samples_do_not_move_the_model(rng):
    x, y = _data(rng, n=16)
    keras.utils.set_random_seed(2)
    model = _functional("hessian", damping=0.1)
    before = model.get_weights()
    model.compile(keras.optimizers.SGD(0.5), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(x, y, sample_weight=np.zeros(16, "float32"), batch_size=16, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_allclose(a, b)


class TwoHeads(kn.NewtonLossModel):
    """Subclassed usage with two outputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.body = keras.layers.Dense(8, activation="tanh")
        self.classes = keras.layers.Dense(3)
        self.value = keras.layers.Dense(2)

    def call(self, inputs):
        h = self.body(inputs)
        return self.classes(h), self.value(h)


def test_multiple_outputs_get_one_newton_target_each(rng):
    x, y = _data(rng)
    values = np.stack([x[:, 0] * 2, x[:, 1] - x[:, 2]], 1).astype("float32")
    keras.utils.set_random_seed(3)
    model = TwoHeads(curvature="hessian", damping=0.1)
    model.compile(keras.optimizers.SGD(0.05),
                  loss=[keras.losses.CategoricalCrossentropy(from_logits=True), "mse"],
                  loss_weights=[1.0, 0.5], jit_compile=True)
    history = model.fit(x, (y, values), batch_size=16, epochs=8, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert np.isfinite(history["newton_loss"]).all()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_mixed_precision_loss_scale_backs_off_and_training_moves(jit_compile, rng):
    x, y = _data(rng)
    policy = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = _functional("hessian", damping=0.1)
        # 2**40 overflows float16 gradients: the optimizer must see the
        # non-finite gradients to halve its scale until steps become finite.
        optimizer = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.05), initial_scale=2.0**40)
        model.compile(optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      jit_compile=jit_compile)
        before = model.get_weights()
        history = model.fit(x, y, batch_size=4, epochs=3, verbose=0).history
    finally:
        keras.mixed_precision.set_dtype_policy(policy)
    assert float(optimizer.dynamic_scale.numpy()) < 2.0**20
    assert np.isfinite(history["loss"]).all()
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert max(np.abs(a - b).max() for a, b in zip(model.get_weights(), before)) > 1e-3


def _two_named_heads():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    classes = keras.layers.Dense(3, name="classes")(hidden)
    value = keras.layers.Dense(2, name="value")(hidden)
    return inputs, [classes, value]


@pytest.mark.parametrize("by_name", [False, True])
def test_multiple_outputs_equal_keras_model_with_newton_loss_per_output(by_name, rng):
    """Per-output targets and loss weights: one step of NewtonLossModel equals
    one step of a plain model compiled with a NewtonLoss for every output
    (lists, or dicts keyed by output name, for losses, weights and y)."""
    x, y = _data(rng, n=16)
    values = np.stack([x[:, 0] * 2, x[:, 1] - x[:, 2]], 1).astype("float32")
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    keras.utils.set_random_seed(4)
    inputs, outputs = _two_named_heads()
    model = kn.NewtonLossModel(inputs, outputs, curvature="fisher", damping=0.1)
    reference = keras.Model(inputs, outputs)
    reference.set_weights(model.get_weights())

    def structure(first, second):
        return {"classes": first, "value": second} if by_name else [first, second]

    model.compile(keras.optimizers.SGD(0.1), loss=structure(ce, "mse"),
                  loss_weights=structure(1.0, 0.25))
    newton = lambda loss: kn.NewtonLoss(loss, curvature="fisher", damping=0.1)
    reference.compile(keras.optimizers.SGD(0.1), loss=[newton(ce), newton("mse")],
                      loss_weights=[1.0, 0.25])
    model.fit(x, structure(y, values), batch_size=16, epochs=1, verbose=0, shuffle=False)
    reference.fit(x, [y, values], batch_size=16, epochs=1, verbose=0, shuffle=False)
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # With a weight of 0 for the value head, its layer must not move.
    keras.utils.set_random_seed(4)
    inputs, outputs = _two_named_heads()
    model = kn.NewtonLossModel(inputs, outputs, curvature="fisher", damping=0.1)
    before = model.get_layer("value").get_weights()
    model.compile(keras.optimizers.SGD(0.1), loss=structure(ce, "mse"),
                  loss_weights=structure(1.0, 0.0))
    model.fit(x, structure(y, values), batch_size=16, epochs=1, verbose=0)
    for got, want in zip(model.get_layer("value").get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_single_output_loss_as_list_or_named_dict(rng):
    x, y = _data(rng, n=16)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    results = []
    for loss in (ce, [ce], {"logits": ce}):
        keras.utils.set_random_seed(5)
        inputs = keras.Input((4,))
        model = kn.NewtonLossModel(inputs, keras.layers.Dense(3, name="logits")(inputs))
        model.compile(keras.optimizers.SGD(0.1), loss=loss)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
        results.append(model.get_weights())
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    model = kn.NewtonLossModel(inputs, keras.layers.Dense(3, name="logits")(inputs))
    # A functional model knows its output names: the mismatch is caught at compile().
    with pytest.raises(ValueError, match="logits"):
        model.compile("sgd", loss={"probabilities": ce})


def test_indefinite_hessian_toy_loss_trains_200_steps_without_nan(rng):
    """ℓ(y) = Σ sin(3y) + 0.1 y²: Hessian changes sign across the outputs."""

    def wavy(y_true, y_pred):
        return tf.reduce_mean(tf.sin(3.0 * (y_pred - y_true)) + 0.1 * tf.square(y_pred), -1)

    x = rng.normal(size=(200 * 8, 4)).astype("float32")
    y = rng.normal(size=(200 * 8, 2)).astype("float32")
    for indefinite in ("abs", "clip"):
        inputs = keras.Input((4,))
        model = kn.NewtonLossModel(inputs, keras.layers.Dense(2)(inputs), step=kn.NewtonStep(
            damping=1e-3, solver=kn.newton.Solver(indefinite=indefinite)))
        model.compile(keras.optimizers.SGD(0.01), loss=wavy, jit_compile=True)
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
        assert all(np.isfinite(w).all() for w in model.get_weights())
        assert np.isfinite(history["newton_loss"]).all()


def test_non_finite_gradients_never_reach_the_weights(rng):
    x, y = _data(rng, n=8)
    x[3, 0] = np.nan
    model = _functional("hessian")
    model.compile(keras.optimizers.SGD(0.1), loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_a_nan_network_output_from_a_finite_input_never_reaches_the_weights(mode, rng):
    # The input is finite; the network itself makes one sample's output NaN
    # (log of a negative number), which no input check can see. Its NaN
    # activations reach every weight gradient in the backward pass, so the
    # documented promise is the guard's: the step is dropped, NaN never
    # reaches the weights.
    x = rng.normal(size=(16, 4)).astype("float32")
    x[:, 0] = np.abs(x[:, 0]) + 0.1
    x[5, 0] = -1.0
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    logged = keras.layers.Lambda(
        lambda v: tf.concat([tf.math.log(v[:, :1]), v[:, 1:]], axis=1))(inputs)
    model = kn.NewtonLossModel(inputs, keras.layers.Dense(3)(logged), curvature="hessian",
                               damping=1e-2)
    model.compile(keras.optimizers.SGD(0.1),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                  jit_compile=mode == "xla", run_eagerly=mode == "eager")
    initial = model.get_weights()
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    for trained, start in zip(model.get_weights(), initial):  # SGD: no step at all
        np.testing.assert_array_equal(trained, start)
    # Without the bad sample the same model does train: the NaN stopped it.
    model.fit(np.delete(x, 5, axis=0), np.delete(y, 5, axis=0), batch_size=15, epochs=1,
              verbose=0)
    assert max(np.abs(a - b).max() for a, b in zip(model.get_weights(), initial)) > 1e-3


def test_save_and_load_keras_file(rng, tmp_path):
    x, y = _data(rng, n=16)
    model = _functional("fisher", damping=0.2)
    model.compile("adam", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored, kn.NewtonLossModel)
    assert restored.step == kn.NewtonStep("fisher", damping=0.2)
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    restored.fit(x, y, epochs=1, verbose=0)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="curvature"):
        _functional(curvature="gauss_newton")
    with pytest.raises(ValueError, match="damping"):
        _functional(damping=-0.5)
    with pytest.raises(ValueError, match="cg"):
        _functional(step=kn.NewtonStep("elementwise_hessian", solver=dict(
            method="cg", indefinite="clip")))
