"""Helper process for tests/distribute/test_multi_worker_fit.py (not collected by pytest).

Trains small classifiers with ``kn.distribute.fit``, one configuration after
another in the same process, on one device (``--strategy single``) or as one
worker of a ``MultiWorkerMirroredStrategy`` job (``TF_CONFIG`` in the
environment), and saves, per configuration ``c``, the final weights
(``c/w{i}``), the Newton state (``c/ratio``, ``c/radius``, ``c/damping``) and
the logged epoch losses (``c/loss``) to an ``.npz`` file, rewritten after
each configuration. A configuration is ``curvature-api[@run]``
(``hessian-loss``, ``fisher-model``, ``adaptive-model@killed``, ...): the
curvature or ``adaptive`` (the Hessian with adaptive damping); ``loss`` (a
``keras.Model`` compiled with ``NewtonLoss``) or ``model``
(``NewtonLossModel``); and a run name, to train the same model again with
its own checkpoints (``checkpoint_dir/config``).

``KN_KILL_AT=config:epoch:step`` makes the process SIGKILL itself after that
batch of that configuration (a callback's ``on_train_batch_end``), the way
a lost machine dies.
``--checks`` first runs the argument checks that need two replicas and prints
their messages; ``--keras-fit`` first tries ``model.fit`` and prints its error.

    TF_CONFIG=... python multi_worker_training.py --strategy multiworker \
        --configs hessian-loss adaptive-model --out w0.npz --checkpoint_dir ckpt
"""

import argparse
import os
import signal
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SAMPLES, BATCH, FEATURES, CLASSES = 32, 8, 4, 3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=["single", "multiworker"], required=True)
    parser.add_argument("--configs", nargs="*", default=[])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--checkpoint_dir", default=None)
    parser.add_argument("--save_every_steps", type=int, default=None)
    parser.add_argument("--checks", action="store_true")
    parser.add_argument("--keras-fit", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import tensorflow as tf

    strategy = (tf.distribute.MultiWorkerMirroredStrategy() if args.strategy == "multiworker"
                else tf.distribute.get_strategy())
    import keras_newton as kn

    print(f"keras_newton from: {os.path.dirname(os.path.abspath(kn.__file__))}", flush=True)
    if args.checks:
        checks(strategy)
    if args.keras_fit:
        keras_fit(strategy)
    run(strategy, args.configs, epochs=args.epochs, checkpoint_dir=args.checkpoint_dir,
        save_every_steps=args.save_every_steps, out=args.out)


def run(strategy, configs, epochs=2, checkpoint_dir=None, save_every_steps=None, out=None):
    """Trains each configuration in turn; returns (and saves to ``out``) the results.

    The test calls it in its own process for the single-device reference.
    """
    import numpy as np

    results = {}
    for config in configs:
        started = time.perf_counter()
        model, history, initial = train(strategy, config, epochs, checkpoint_dir,
                                        save_every_steps)
        for i, weight in enumerate(initial):
            results[f"{config}/init{i}"] = weight
        for i, weight in enumerate(model.get_weights()):
            results[f"{config}/w{i}"] = weight
        results[f"{config}/loss"] = np.asarray(history.history["loss"])
        results[f"{config}/epochs"] = np.asarray(history.epoch)
        state = newton_loss(model).damping_state
        if state is not None:
            for name in ("ratio", "radius", "damping"):
                results[f"{config}/{name}"] = getattr(state, name).numpy()
        print(f"{config} trained in {time.perf_counter() - started:.1f} s", flush=True)
        if out is not None:
            np.savez(out, **results)  # after each one: a later one may be killed
    return results


def data(epoch):
    """The same batches on every process: a fixed reshuffle per epoch."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, SAMPLES)]
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        SAMPLES, seed=epoch, reshuffle_each_iteration=False).batch(BATCH)


def build(strategy, config):
    import keras

    import keras_newton as kn

    curvature, api = config.split("@")[0].split("-")
    damping = "adaptive" if curvature == "adaptive" else 0.05
    curvature = "hessian" if curvature == "adaptive" else curvature
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((FEATURES,))
        hidden = keras.layers.Dense(6, activation="tanh")(inputs)
        outputs = keras.layers.Dense(CLASSES)(hidden)
        if api == "model":
            model = kn.NewtonLossModel(inputs, outputs, curvature=curvature, damping=damping)
            model.compile(keras.optimizers.SGD(0.5), loss=ce, jit_compile=False)
        else:
            model = keras.Model(inputs, outputs)
            model.compile(keras.optimizers.SGD(0.5), loss=kn.NewtonLoss(
                ce, curvature=curvature, damping=damping), metrics=[ce], jit_compile=False)
    return model


def newton_loss(model):
    wrappers = getattr(model, "_newton_wrappers", None)
    return wrappers[0] if wrappers else model.loss


def kill_at(epoch, step):
    """A Keras callback that SIGKILLs this process after batch ``step`` of ``epoch``."""
    import keras

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, current, logs=None):
            self.epoch = current

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == epoch and batch == step:
                print(f"killing myself after epoch {epoch} batch {step}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    return Kill()


def train(strategy, config, epochs, checkpoint_dir, save_every_steps):
    import keras_newton as kn

    model = build(strategy, config)
    initial = model.get_weights()
    callbacks = []
    kill = os.environ.get("KN_KILL_AT", "").split(":")
    if kill[0] and config == kill[0]:
        callbacks.append(kill_at(int(kill[1]), int(kill[2])))
    directory = None if checkpoint_dir is None else os.path.join(checkpoint_dir, config)
    history = kn.distribute.fit(model, data, strategy=strategy, epochs=epochs,
                                callbacks=callbacks, checkpoint_dir=directory,
                                save_every_steps=save_every_steps, verbose=0)
    print(f"{config} epochs trained: {history.epoch}", flush=True)
    return model, history, initial


def checks(strategy):
    """Prints the errors of the misuses that need two replicas."""
    import keras
    import tensorflow as tf

    import keras_newton as kn

    model = build(strategy, "hessian-model")
    odd = data(0).unbatch().batch(BATCH + 1, drop_remainder=True)
    try:
        kn.distribute.fit(model, odd, strategy=strategy, verbose=0)
    except ValueError as error:
        print(f"batch error: {error}", flush=True)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((FEATURES,))
    outside = kn.NewtonLossModel(inputs, keras.layers.Dense(CLASSES)(inputs))
    outside.compile("sgd", loss="categorical_crossentropy")
    try:
        kn.distribute.fit(outside, data, strategy=strategy, verbose=0)
    except ValueError as error:
        print(f"scope error: {error}", flush=True)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((FEATURES,))
        inside = keras.Model(inputs, keras.layers.Dense(CLASSES)(inputs))
    loss = kn.NewtonLoss("categorical_crossentropy", damping="adaptive")
    with strategy.scope():
        inside.compile("sgd", loss=loss)
    try:
        kn.distribute.fit(inside, data, strategy=strategy, verbose=0)
    except ValueError as error:
        print(f"loss scope error: {error}", flush=True)
    del tf


def keras_fit(strategy):
    """Prints the error of Keras' own fit under this strategy, and where it is raised."""
    import keras

    keras.config.disable_traceback_filtering()
    model = build(strategy, "hessian-model")
    try:
        model.fit(data(0), epochs=1, verbose=0)
        print("keras fit: ok", flush=True)
    except Exception as error:  # noqa: BLE001 - the message is what is shown
        import traceback  # noqa: PLC0415

        message = " ".join(str(error).split())
        print(f"keras fit: {type(error).__name__}: {message[:60]} ... {message[-160:]}", flush=True)
        frames = [f.name for f in traceback.extract_tb(error.__traceback__)
                  if f"keras{os.sep}src" in f.filename]
        print(f"keras fit raised in: {' > '.join(frames)}", flush=True)


if __name__ == "__main__":
    main()
