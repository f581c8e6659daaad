"""Helper process for tests/test_distributed.py (not collected by pytest).

Trains a small classifier full-batch for a few steps, single-device or under a
``tf.distribute`` strategy, with ``NewtonLoss`` in ``compile`` and/or with
``NewtonLossModel`` (one model per ``--api``, in turn, in the same process),
and saves the final weights to an ``.npz`` file as ``{api}_{index}``. Logical
devices and ``TF_CONFIG`` must be set before TensorFlow starts, hence a
separate process. ``--outputs 300 --batch 8`` with the Fisher makes the
automatic solver choice the Woodbury solve (``m > 256`` and ``m > N``); the
number of Woodbury solves traced is printed.

    python distributed_training.py --strategy mirrored --curvature fisher \
        --api loss model --out weights.npz
"""

import argparse
import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=["single", "mirrored", "multiworker"])
    parser.add_argument("--curvature", default="hessian")
    parser.add_argument("--api", choices=["loss", "model"], nargs="+", default=["loss"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--outputs", type=int, default=3, help="classes = outputs m")
    parser.add_argument("--batch", type=int, default=16, help="global (full) batch")
    parser.add_argument("--learning_rate", type=float, default=0.5)
    parser.add_argument("--damping", default="0.05", help="a λ, or 'adaptive'")
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

    # The module that solves the Newton steps (it looks Woodbury up at call time).
    core = importlib.import_module("keras_newton.newton.solvers")
    package = os.path.dirname(os.path.dirname(os.path.abspath(core.__file__)))
    print(f"keras_newton from: {package}")

    # Count the Woodbury solves traced, to show which solver "auto" chose.
    woodbury_solves = []
    woodbury = core.woodbury_fisher_steps

    def counted_woodbury(*solve_args, **solve_kwargs):
        woodbury_solves.append(1)
        return woodbury(*solve_args, **solve_kwargs)

    core.woodbury_fisher_steps = counted_woodbury

    rng = np.random.default_rng(0)
    n, m = args.batch, args.outputs
    x = rng.normal(size=(n, 4)).astype("float32")
    y = np.eye(m, dtype="float32")[rng.integers(0, m, n)]
    weights = {}
    for api in args.api:
        initial, weights[api] = train(args, strategy, api, x, y)
        moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, weights[api]))
        print(f"{api} largest weight change: {moved:.4f}")
    np.savez(args.out, **{f"{api}_{i}": w for api, ws in weights.items()
                          for i, w in enumerate(ws)})
    print(f"woodbury solves traced: {len(woodbury_solves)}")


def train(args, strategy, api, x, y):
    """Trains one model with ``api``; returns initial and final weights."""
    import keras
    import tensorflow as tf

    import keras_newton as kn

    n = len(x)
    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    damping = args.damping if args.damping == "adaptive" else float(args.damping)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(6, activation="tanh")(inputs)
        outputs = keras.layers.Dense(y.shape[1])(hidden)
        if api == "model":
            model = kn.NewtonLossModel(inputs, outputs, curvature=args.curvature,
                                       damping=damping)
            loss = ce
        else:
            model = keras.Model(inputs, outputs)
            loss = kn.NewtonLoss(ce, curvature=args.curvature, damping=damping)
        model.compile(keras.optimizers.SGD(args.learning_rate), loss=loss, jit_compile=False)
    # Full-batch steps: every step sees all n samples whatever the sharding,
    # so the result must equal single-device training.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(n).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = dataset.with_options(options)
    initial = model.get_weights()
    if args.strategy == "multiworker":
        # Keras 3.15's fit() under MultiWorkerMirroredStrategy fails before
        # the first step (_maybe_symbolic_build averages the first PerReplica
        # batch across workers); drive the model's own train_step with
        # strategy.run by hand, the bare form of kn.distribute.fit's step.
        with strategy.scope():
            model.optimizer.build(model.trainable_variables)

        def worker_dataset(context):
            # Worker i feeds samples [ih, ih + h), h = n / 2: the global batch is all n.
            h = n // context.num_input_pipelines
            part = slice(h * context.input_pipeline_id, h * context.input_pipeline_id + h)
            return tf.data.Dataset.from_tensor_slices((x[part], y[part])).batch(h).repeat()

        iterator = iter(strategy.distribute_datasets_from_function(worker_dataset))

        @tf.function
        def train_step(batch):
            strategy.run(model.train_step, args=(batch,))

        for _ in range(args.steps):
            train_step(next(iterator))
    else:
        model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    wrappers = list(getattr(model, "_newton_wrappers", {}).values()) or [loss]
    state = wrappers[0].damping_state
    if state is not None:
        print(f"{api} damping ratio: {float(state.ratio.numpy()):.9g}")
        print(f"{api} last damping: {float(state.damping.numpy()):.9g}")
        print(f"{api} damping radius: {float(state.radius.numpy()):.9g}")
    return initial, model.get_weights()


if __name__ == "__main__":
    main()
