"""Helper process for tests/test_distributed.py (not collected by pytest).

Trains a small classifier full-batch for a few steps, single-device or under a
``tf.distribute`` strategy, with ``NewtonLoss`` in ``compile`` or with
``NewtonLossModel``, and saves the final weights to an ``.npz`` file. Logical
devices and ``TF_CONFIG`` must be set before TensorFlow starts, hence a
separate process.

    python distributed_training.py --strategy mirrored --curvature fisher \
        --api loss --out weights.npz
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=["single", "mirrored", "multiworker"])
    parser.add_argument("--curvature", default="hessian")
    parser.add_argument("--api", choices=["loss", "model"], default="loss")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    if args.strategy == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    elif args.strategy == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()

    import keras

    keras.config.disable_traceback_filtering()

    import keras_newton as kn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)

    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(6, activation="tanh")(inputs)
        outputs = keras.layers.Dense(3)(hidden)
        if args.api == "model":
            model = kn.NewtonLossModel(inputs, outputs, curvature=args.curvature, damping=0.05)
            loss = ce
        else:
            model = keras.Model(inputs, outputs)
            loss = kn.NewtonLoss(ce, curvature=args.curvature, damping=0.05)
        model.compile(keras.optimizers.SGD(0.5), loss=loss, jit_compile=False)
    # Full-batch steps: every step sees all 16 samples whatever the sharding,
    # so the result must equal single-device training.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = dataset.with_options(options)
    initial = model.get_weights()
    if args.strategy == "multiworker":
        # Keras 3.15's fit() under MultiWorkerMirroredStrategy fails in its
        # own bookkeeping (it reduces a PerReplica batch and scalar logs with
        # strategy.reduce(MEAN, axis=0)); drive the model's own train_step
        # with strategy.run instead, which is what fit() does per step.
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)

        def worker_dataset(context):
            # Worker i feeds samples [8i, 8i + 8): the global batch is all 16.
            part = slice(8 * context.input_pipeline_id, 8 * context.input_pipeline_id + 8)
            return tf.data.Dataset.from_tensor_slices((x[part], y[part])).batch(8).repeat()

        iterator = iter(strategy.distribute_datasets_from_function(worker_dataset))

        @tf.function
        def train_step(batch):
            strategy.run(model.train_step, args=(batch,))

        for _ in range(args.steps):
            train_step(next(iterator))
    else:
        model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    final = model.get_weights()
    np.savez(args.out, *final)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, final))
    print(f"largest weight change: {moved:.4f}")


if __name__ == "__main__":
    main()
