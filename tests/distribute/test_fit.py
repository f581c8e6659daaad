"""kn.distribute.fit in one process: equal to model.fit, checkpoints, resumption, errors.

The two-worker runs are in test_multi_worker_fit.py; here the default
strategy (and a one-device MirroredStrategy for the scope checks) shows
what does not need several processes.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_newton as kn
from keras_newton.distribute._checkpoint import TrainingCheckpoint, newton_losses

SAMPLES, BATCH = 32, 8


def _data(epoch=0, samples=SAMPLES):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, samples)]
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        samples, seed=epoch, reshuffle_each_iteration=False).batch(BATCH)


def _model(api, mode="function", damping="adaptive", refresh_every=1, optimizer="adam"):
    keras.utils.set_random_seed(0)
    step = kn.NewtonStep("hessian" if api != "loss" else "fisher", damping=damping,
                         estimate=kn.newton.HessianEstimate(refresh_every=refresh_every))
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3)(keras.layers.Dense(6, activation="tanh")(inputs))
    options = dict(run_eagerly=mode == "eager", jit_compile=mode == "xla")
    opt = keras.optimizers.Adam(0.05) if optimizer == "adam" else keras.optimizers.SGD(0.5)
    if api == "model":
        model = kn.NewtonLossModel(inputs, outputs, step=step)
        model.compile(opt, loss=ce, metrics=["accuracy"], **options)
    else:
        model = keras.Model(inputs, outputs)
        model.compile(opt, loss=kn.NewtonLoss(ce, step), metrics=[ce], **options)
    return model


class Recorder(keras.callbacks.Callback):
    """Records the callback calls and their logs."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def _max_difference(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


# The execution modes of conftest.py for the model API; the loss API (the
# loop does not depend on it) in tf.function, and in the other two with -m slow.
@pytest.mark.parametrize("mode, api", [
    ("eager", "model"), ("function", "model"), ("xla", "model"), ("function", "loss"),
    pytest.param("eager", "loss", marks=pytest.mark.slow),
    pytest.param("xla", "loss", marks=pytest.mark.slow),
])
def test_fit_equals_model_fit(mode, api):
    # Keras' own fit with run_eagerly=True fails on NewtonLossModel's adaptive
    # damping log (a variable, which its eager Optional wrapping cannot
    # rebuild); compare a fixed damping there.
    damping = 0.05 if (mode, api) == ("eager", "model") else "adaptive"
    reference, record_reference = _model(api, mode, damping), Recorder()
    expected = reference.fit(_data(), epochs=2, verbose=0, callbacks=[record_reference])
    model, record = _model(api, mode, damping), Recorder()
    history = kn.distribute.fit(model, _data(), epochs=2, verbose=0, callbacks=[record])
    assert history is model.history
    assert record.calls == record_reference.calls
    assert history.epoch == expected.epoch == [0, 1]
    assert sorted(history.history) == sorted(expected.history)
    # The same operations in the same order: bit-for-bit (measured so under
    # XLA too, but XLA may fuse the two steps' graphs differently, hence 1e-6).
    tolerance = 1e-6 if mode == "xla" else 0
    print(f"{mode}-{api}: largest weight difference to model.fit "
          f"{_max_difference(model.get_weights(), reference.get_weights()):.3g}")
    for name, values in expected.history.items():
        np.testing.assert_allclose(history.history[name], values, rtol=tolerance, err_msg=name)
    assert _max_difference(model.get_weights(), reference.get_weights()) <= tolerance


def test_eager_adaptive_damping_equals_tf_function():
    # Where Keras' eager fit cannot run it (above), this loop can.
    eager, compiled = _model("model", "eager"), _model("model", "function")
    history = kn.distribute.fit(eager, _data(), epochs=2, verbose=0)
    expected = kn.distribute.fit(compiled, _data(), epochs=2, verbose=0)
    np.testing.assert_allclose(history.history["damping"], expected.history["damping"],
                               rtol=1e-5)
    assert _max_difference(eager.get_weights(), compiled.get_weights()) <= 1e-5


def test_steps_per_epoch_a_dataset_function_and_stop_training():
    model = _model("model")
    seen = []

    def dataset(epoch):
        seen.append(epoch)
        return _data(epoch).repeat()

    class StopAfterTwoEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 1

    record = Recorder()
    history = kn.distribute.fit(model, dataset, epochs=5, steps_per_epoch=3, verbose=0,
                                callbacks=[StopAfterTwoEpochs(), record])
    assert history.epoch == [0, 1]
    assert [c[1] for c in record.calls if c[0] == "batch_end"] == [0, 1, 2] * 2
    assert seen[-2:] == [0, 1]  # epoch e iterates dataset(e)


def test_progress_bar_prints_on_the_chief_only(tmp_path, capsys, monkeypatch):
    kn.distribute.fit(_model("loss"), _data(), verbose=1)
    assert "4/4" in capsys.readouterr().out
    # A worker that is not the chief prints nothing and leaves checkpoint_dir
    # to the chief, deleting its own copy after each save.
    extended = type(tf.distribute.get_strategy().extended)
    monkeypatch.setattr(extended, "should_checkpoint", property(lambda self: False))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    import tempfile  # noqa: PLC0415
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    kn.distribute.fit(_model("loss"), _data(), verbose=1, checkpoint_dir=str(tmp_path / "ckpt"),
                      save_every_steps=1)
    assert capsys.readouterr().out == ""
    assert not os.path.exists(tmp_path / "ckpt")
    assert os.listdir(tmp_path / "tmp") == []


def _state(model):
    """The Newton state values of the model's (first) Newton loss."""
    loss = newton_losses(model)[0]
    values = {name: v.numpy() for name, v in loss.damping_state.values().items()}
    cache = loss.hessian_cache
    if cache is not None and cache.step is not None:
        values.update(cache_step=cache.step.numpy(), eigenvalues=cache.eigenvalues.numpy(),
                      eigenvectors=cache.eigenvectors.numpy())
    return values


def test_the_checkpoint_restores_adaptive_damping_and_the_cached_hessian(tmp_path):
    model = _model("model", refresh_every=3)
    kn.distribute.fit(model, _data(), epochs=1, verbose=0, checkpoint_dir=str(tmp_path))
    saved = _state(model)
    assert saved["cache_step"] > 0 and np.abs(saved["eigenvectors"]).max() > 0
    assert not np.isnan(saved["damping"])
    fresh = _model("model", refresh_every=3)
    before = _state(fresh)
    assert before["ratio"] == pytest.approx(1e-2) and np.isnan(before["damping"])
    checkpoint = TrainingCheckpoint(fresh, tf.distribute.get_strategy(), str(tmp_path))
    fresh.optimizer.build(fresh.trainable_variables)
    assert checkpoint.restore() == (1, 0)
    # The cache makes its variables at its first call; the checkpoint
    # restores them then (deferred restoration).
    cache = newton_losses(fresh)[0].hessian_cache
    assert cache.step is None
    cache._ensure_variables(saved["eigenvalues"].shape[0], saved["eigenvectors"].shape[0],
                            tf.float32)
    restored = _state(fresh)
    assert sorted(restored) == sorted(saved)
    for name, value in saved.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    np.testing.assert_array_equal(fresh.get_weights()[0], model.get_weights()[0])


class Interrupt(Exception):
    pass


def _interrupt_at(epoch, batch):
    class InterruptAt(keras.callbacks.Callback):
        def on_epoch_begin(self, current, logs=None):
            self.epoch = current

        def on_train_batch_end(self, current, logs=None):
            if (self.epoch, current) == (epoch, batch):
                raise Interrupt()

    return InterruptAt()


@pytest.mark.parametrize("api, refresh_every, interrupt", [
    # One batch after a step checkpoint (saved every 2 batches): it is trained again.
    ("loss", 1, (1, 1)),
    # After the last batch of epoch 0, before the epoch's checkpoint; the
    # cached Hessian (refreshed every 3 calls) is mid-cycle there.
    ("model", 3, (0, 3)),
])
def test_resuming_after_an_interruption_equals_the_uninterrupted_run(
        tmp_path, api, refresh_every, interrupt):
    options = dict(epochs=3, verbose=0, save_every_steps=2)
    reference = _model(api, refresh_every=refresh_every)
    expected = kn.distribute.fit(reference, _data, checkpoint_dir=str(tmp_path / "a"), **options)
    interrupted = _model(api, refresh_every=refresh_every)
    with pytest.raises(Interrupt):
        kn.distribute.fit(interrupted, _data, checkpoint_dir=str(tmp_path / "b"),
                          callbacks=[_interrupt_at(*interrupt)], **options)
    resumed = _model(api, refresh_every=refresh_every)
    history = kn.distribute.fit(resumed, _data, checkpoint_dir=str(tmp_path / "b"), **options)
    assert history.epoch == list(range(interrupt[0], 3))
    # Same process, same operations on the same values: bit-for-bit.
    assert _max_difference(resumed.get_weights(), reference.get_weights()) == 0
    for v, w in zip(resumed.optimizer.variables, reference.optimizer.variables):
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=v.path)
    expected_state, state = _state(reference), _state(resumed)
    assert sorted(state) == sorted(expected_state)
    for name, value in expected_state.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    for name, values in expected.history.items():  # the resumed epoch's logs too
        np.testing.assert_array_equal(history.history[name], values[interrupt[0]:], name)
    # A finished run's folder: calling again trains nothing.
    again = kn.distribute.fit(_model(api, refresh_every=refresh_every), _data,
                              checkpoint_dir=str(tmp_path / "b"), **options)
    assert again.epoch == []


def test_a_save_torn_before_its_index_is_written_resumes_from_the_previous_one(
        tmp_path, monkeypatch):
    # A kill inside a save: the checkpoint's data files are written, the
    # `checkpoint` index file (written last by tf.train.CheckpointManager) is
    # not. Saves here: after 2 batches of epoch 0, at its end, after 2 of
    # epoch 1 (torn: the index still names the epoch-end checkpoint).
    options = dict(epochs=2, verbose=0, save_every_steps=2)
    reference = _model("model")
    kn.distribute.fit(reference, _data, checkpoint_dir=str(tmp_path / "reference"), **options)
    record = tf.train.CheckpointManager._record_state
    calls = []

    def torn(manager):
        calls.append(1)
        if len(calls) == 5:  # two per save: the first of the third save
            raise Interrupt()
        record(manager)

    monkeypatch.setattr(tf.train.CheckpointManager, "_record_state", torn)
    with pytest.raises(Interrupt):
        kn.distribute.fit(_model("model"), _data, checkpoint_dir=str(tmp_path), **options)
    monkeypatch.setattr(tf.train.CheckpointManager, "_record_state", record)
    assert os.path.exists(tmp_path / "ckpt-3.index")  # written, but not in the index
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-2")
    resumed = _model("model")
    history = kn.distribute.fit(resumed, _data, checkpoint_dir=str(tmp_path), **options)
    assert history.epoch == [1]  # from the end of epoch 0
    assert _max_difference(resumed.get_weights(), reference.get_weights()) == 0
    for name, value in _state(reference).items():
        np.testing.assert_array_equal(_state(resumed)[name], value, err_msg=name)


def test_a_subclassed_newton_loss_model_has_its_state_checkpointed(tmp_path):
    class Net(kn.NewtonLossModel):
        def __init__(self):
            super().__init__(damping="adaptive")
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    def build():
        keras.utils.set_random_seed(0)
        net = Net()
        net.compile("sgd", loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        return net

    model = build()
    kn.distribute.fit(model, _data(), epochs=1, verbose=0, checkpoint_dir=str(tmp_path))
    fresh = build()
    kn.distribute.fit(fresh, _data(), epochs=1, verbose=0, checkpoint_dir=str(tmp_path))
    assert newton_losses(fresh)  # made before the first step, to be restored
    np.testing.assert_array_equal(_state(fresh)["ratio"], _state(model)["ratio"])
    np.testing.assert_array_equal(_state(fresh)["radius"], _state(model)["radius"])


def test_a_changed_model_does_not_restore_silently(tmp_path):
    kn.distribute.fit(_model("model"), _data(), verbose=0, checkpoint_dir=str(tmp_path))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    other = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    other.compile("adam", loss="categorical_crossentropy")
    # tf.train refuses it (an AssertionError for missing objects, a
    # ValueError for a shape that differs, as here).
    with pytest.raises((AssertionError, ValueError)):
        kn.distribute.fit(other, _data(), verbose=0, checkpoint_dir=str(tmp_path))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, "epochs must be an int >= 1"),
    (dict(epochs=1.5), ValueError, "epochs must be an int >= 1"),
    (dict(epochs=True), ValueError, "epochs must be an int >= 1"),
    (dict(steps_per_epoch=0), ValueError, "steps_per_epoch must be None or an int >= 1"),
    (dict(save_every_steps=2), ValueError, "save_every_steps needs a checkpoint_dir"),
    (dict(save_every_steps=0, checkpoint_dir="x"), ValueError, "save_every_steps must be"),
    (dict(verbose=3), ValueError, "verbose=3"),
    (dict(checkpoint_dir=3), TypeError, "checkpoint_dir must be a path"),
    (dict(strategy="mirrored"), TypeError, "strategy must be a tf.distribute.Strategy"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        kn.distribute.fit(_model("loss"), _data(), **kwargs)


def test_bad_datasets_are_named():
    model = _model("loss")
    with pytest.raises(TypeError, match="dataset must be a tf.data.Dataset"):
        kn.distribute.fit(model, np.zeros((8, 4)))
    with pytest.raises(ValueError, match="dataset's components have different first dim"):
        kn.distribute.fit(model, _data().unbatch())
    with pytest.raises(ValueError, match="dataset must yield batches"):
        kn.distribute.fit(model, tf.data.Dataset.range(4))
    with pytest.raises(ValueError, match="dataset is infinite .* steps_per_epoch"):
        kn.distribute.fit(model, _data().repeat())
    with pytest.raises(TypeError, match=r"dataset must be a tf.data.Dataset \(or a function"):
        kn.distribute.fit(model, lambda epoch: [1, 2])


def test_an_uncompiled_model_is_named_and_an_unbuilt_one_is_built():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="model is not compiled"):
        kn.distribute.fit(model, _data())
    with pytest.raises(TypeError, match="model must be a keras.Model"):
        kn.distribute.fit("model", _data())
    # As model.fit does, an unbuilt model is built from the batch spec.
    keras.utils.set_random_seed(0)
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    unbuilt.compile("sgd", loss="mse")
    keras.utils.set_random_seed(0)
    reference = keras.Sequential([keras.layers.Dense(3)])
    reference.compile("sgd", loss="mse")
    history = kn.distribute.fit(unbuilt, _data(), verbose=0)
    expected = reference.fit(_data(), verbose=0)
    assert history.history["loss"] == expected.history["loss"]


def test_a_model_made_outside_the_strategy_scope_is_named():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    outside = _model("model")
    with pytest.raises(ValueError, match="model was not built in the scope of strategy="):
        kn.distribute.fit(outside, _data(), strategy=strategy)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        inside = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    loss = kn.NewtonLoss("categorical_crossentropy", damping="adaptive")  # outside
    with strategy.scope():
        inside.compile("sgd", loss=loss)
    with pytest.raises(ValueError, match="model's loss holds Newton state .* outside the scope"):
        kn.distribute.fit(inside, _data(), strategy=strategy)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        built_inside = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    built_inside.compile("adam", loss="categorical_crossentropy")  # outside
    with pytest.raises(ValueError, match="model was compiled outside the scope"):
        kn.distribute.fit(built_inside, _data(), strategy=strategy)


def test_mirrored_strategy_on_one_device_equals_the_default_strategy(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        mirrored = _model("model")
        # Called inside the scope too, with checkpoints (mirrored variables).
        history = kn.distribute.fit(mirrored, _data(), strategy=strategy, epochs=2, verbose=0,
                                    checkpoint_dir=str(tmp_path), save_every_steps=2)
    assert tf.train.latest_checkpoint(str(tmp_path))
    reference = _model("model")
    expected = kn.distribute.fit(reference, _data(), epochs=2, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], rtol=1e-6)
    assert _max_difference(mirrored.get_weights(), reference.get_weights()) <= 1e-6


def test_the_docstring_example_runs():
    import doctest  # noqa: PLC0415

    from keras_newton.distribute import _fit  # noqa: PLC0415

    finder = doctest.DocTestFinder()
    tests = [t for t in finder.find(_fit.fit, "fit", globs={}) if t.examples]
    assert tests
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
