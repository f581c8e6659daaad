"""``fit``: the model's own ``train_step`` under any ``tf.distribute`` strategy, resumable."""

import keras
import numpy as np
import tensorflow as tf

from keras_newton._keras_private import symbolic_build
from keras_newton.distribute import _checks as checks
from keras_newton.distribute._checkpoint import TrainingCheckpoint, newton_losses, newton_modules


def fit(model, dataset, *, strategy=None, epochs: int = 1, steps_per_epoch=None,
        callbacks=None, checkpoint_dir=None, save_every_steps=None, verbose="auto"):
    """Trains ``model`` like ``model.fit``, also under ``MultiWorkerMirroredStrategy``, resumably.

    Each step runs the compiled model's own ``train_step`` on every replica
    with ``strategy.run``, inside a ``tf.function``, on a batch of
    ``strategy.experimental_distribute_dataset(dataset)``. So a plain
    ``keras.Model``, one compiled with :class:`keras_newton.NewtonLoss` and a
    :class:`keras_newton.NewtonLossModel` train exactly as their ``train_step``
    says, with the batch curvature of the global batch. This is what Keras'
    ``fit`` does per step; Keras 3.15's ``fit`` itself fails under
    ``MultiWorkerMirroredStrategy`` before the first step, for any model
    (``ValueError: Attempt to convert a value (PerReplica:...)``, where it
    averages the first distributed batch across the workers to build the
    model symbolically), which is why this loop exists. On one machine,
    ``model.fit`` under ``MirroredStrategy`` is the simpler choice and gives
    the same steps.

    Logs. ``train_step`` returns metric results, but Keras keeps a metric's
    accumulators per replica (``synchronization="on_read"``), so inside
    ``strategy.run`` each replica returns its own shard's values (Keras'
    ``fit`` then averages them across replicas). This loop instead reads
    every metric once after the step, outside ``strategy.run``, where reading sums the
    accumulators of all replicas: the logged ``loss`` and metrics are those
    of the global batch, as on one device (also when the replicas' shards
    differ in size). A log that is not a metric (the adaptive ``damping``,
    or a custom ``train_step``'s own value) is averaged over the replicas
    (``strategy.reduce(MEAN, ...)``). Epoch logs are the last step's, as in
    ``model.fit``.

    Callbacks. A ``keras.callbacks.History`` is always added (and
    returned); a progress bar (``verbose``) only on the chief, so that one
    line per step is printed per job. The calls are ``on_train_begin``,
    ``on_epoch_begin``, ``on_train_batch_begin``/``end``, ``on_epoch_end``
    and ``on_train_end``; ``model.stop_training`` ends training after the
    step or epoch (``EarlyStopping`` works). Every worker runs the user's
    callbacks: one that writes files should write from the chief only.
    Not supported (use ``model.evaluate`` between calls instead):
    validation data, ``initial_epoch`` (resumption comes from the
    checkpoint), class weights and sample weights other than those the
    dataset yields as a third element.

    Data. ``dataset`` yields ``(x, y)`` or ``(x, y, sample_weight)`` batches
    of the **global** batch size, a multiple of
    ``strategy.num_replicas_in_sync``; the strategy splits each batch over
    the replicas (and, by ``tf.data``'s auto-sharding, over the workers).
    Each epoch iterates the dataset from its start; with ``steps_per_epoch``
    an epoch is its first ``steps_per_epoch`` batches (a repeated dataset
    needs it). ``dataset`` may also be a function ``epoch -> Dataset``: use
    it to reshuffle every epoch reproducibly, e.g.
    ``lambda epoch: data.shuffle(n, seed=epoch).batch(b)``.

    Fault tolerance. With ``checkpoint_dir``, the training state (model
    and optimizer variables, metric accumulators, the Newton losses' state:
    adaptive damping and cached Hessian) and the data position (epoch, and
    batches of it done) are saved with ``tf.train.CheckpointManager`` at
    the end of every epoch and, with ``save_every_steps=k``, every ``k``
    batches. A call that finds a checkpoint there restores it and continues
    from its position: it iterates the epoch's dataset again and skips the
    batches already trained on. So restart the whole job (every worker)
    with the same arguments after a failure, and it ends with the weights
    of an uninterrupted run — provided the dataset yields the same batches
    in the same order each time it is iterated (a fixed shuffle seed and
    ``reshuffle_each_iteration=False``, or a function of the epoch). Every
    worker takes part in each save; only the chief (where
    ``strategy.extended.should_checkpoint``) writes to ``checkpoint_dir``,
    which every worker must be able to read (a shared file system or
    bucket); the others write to a temporary folder deleted after each save,
    the pattern of TensorFlow's multi-worker tutorial
    (https://www.tensorflow.org/tutorials/distribute/multi_worker_with_keras). A completed run
    leaves its last checkpoint; calling again with the same folder and
    ``epochs`` trains nothing.

    Compilation. The step runs in a ``tf.function`` (eagerly if the model
    was compiled with ``run_eagerly=True``); with XLA only when the model was
    compiled with ``jit_compile=True`` and there is no strategy: Keras 3.15
    switches XLA off under ``tf.distribute`` on CPU and GPU, and forcing it
    under ``MirroredStrategy`` fails inside TensorFlow.

    Example (one device; the same call runs on every worker of a
    ``MultiWorkerMirroredStrategy`` job, see the distribution guide):

    >>> import keras, numpy as np, tensorflow as tf, keras_newton as kn
    >>> strategy = tf.distribute.get_strategy()
    >>> with strategy.scope():
    ...     inputs = keras.Input((4,))
    ...     model = kn.NewtonLossModel(inputs, keras.layers.Dense(3)(inputs),
    ...                                damping="adaptive")
    ...     model.compile(keras.optimizers.SGD(0.1),
    ...                   loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    >>> x = np.random.rand(32, 4).astype("float32")
    >>> y = np.eye(3, dtype="float32")[np.arange(32) % 3]
    >>> data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    >>> history = kn.distribute.fit(model, data, strategy=strategy, epochs=2, verbose=0)
    >>> sorted(history.history)
    ['damping', 'loss', 'newton_loss']

    Args:
      model: a compiled ``keras.Model``, made and compiled inside
        ``strategy.scope()`` (its Newton losses too); an unbuilt model is
        built from the dataset's batch spec, as ``model.fit`` does.
      dataset: a ``tf.data.Dataset`` of global batches, or a function
        ``epoch -> tf.data.Dataset``.
      strategy: the ``tf.distribute.Strategy``; ``None``: the one the model
        was built under (the default strategy outside any scope).
      epochs: number of epochs, ``>= 1`` (counted from the start of
        training, also when resuming).
      steps_per_epoch: batches per epoch; ``None``: until the dataset ends.
      callbacks: a list of ``keras.callbacks.Callback``.
      checkpoint_dir: folder of the checkpoints to save to and resume from;
        ``None``: no checkpoints.
      save_every_steps: also save after every this many batches of an
        epoch (counted from its start; needs ``checkpoint_dir``); ``None``:
        at epoch ends only.
      verbose: ``"auto"`` (= 1), 0 (silent), 1 (progress bar) or 2 (one line
        per epoch), on the chief only.

    Returns:
      The ``keras.callbacks.History`` of this call (``model.history``):
      ``history.history[name]`` has one value per epoch trained by it.

    Raises:
      TypeError: ``model`` is not a Keras model, ``strategy`` not a
        strategy, or ``dataset`` not a ``tf.data.Dataset`` (or a function
        returning one).
      ValueError: ``model`` is not compiled, or was built or compiled
        outside ``strategy.scope()``; ``dataset`` is not batched,
        its batch size is not a multiple of the replica count, or it is
        infinite without ``steps_per_epoch``; ``epochs``,
        ``steps_per_epoch`` or ``save_every_steps`` is not a positive int;
        ``save_every_steps`` without ``checkpoint_dir``.
      AssertionError or ValueError: (from ``tf.train``) the checkpoint in
        ``checkpoint_dir`` was written for a different model or optimizer.
    """
    checks.check_compiled(model)
    strategy = checks.check_strategy(model, strategy)
    verbose = checks.check_counts(epochs, steps_per_epoch, checkpoint_dir, save_every_steps,
                                  verbose)
    make_dataset = dataset if callable(dataset) and not isinstance(dataset, tf.data.Dataset) \
        else (lambda epoch: dataset)
    checks.check_dataset(make_dataset(0), strategy, steps_per_epoch)

    # Before building under the scope (which would fail with another strategy's
    # variables) and after (what it made).
    _check_scope(model, strategy)
    with strategy.scope():
        # Every variable a restore assigns must exist first, but Keras makes
        # the compiled metrics' and the optimizer's at the first step; make
        # them (and an unbuilt model's) from the batch spec, as fit() does.
        symbolic_build(model, make_dataset(0).element_spec)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        _make_newton_losses(model, make_dataset(0).element_spec)
    _check_scope(model, strategy)

    position = (0, 0)
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = TrainingCheckpoint(model, strategy, str(checkpoint_dir))
        position = checkpoint.restore() or position

    train_function = _train_function(model, strategy)
    is_chief = bool(strategy.extended.should_checkpoint)
    steps = _steps(make_dataset(position[0]), steps_per_epoch)
    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=bool(verbose) and is_chief, model=model,
        verbose=verbose, epochs=epochs, steps=steps)

    model.stop_training = False
    callback_list.on_train_begin()
    epoch_logs = None
    for epoch in range(position[0], epochs):
        start = position[1] if epoch == position[0] else 0
        if start == 0:  # a resumed epoch keeps its restored metric accumulators
            model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        data = make_dataset(epoch)
        if epoch > 0 and data is not dataset:
            checks.check_dataset(data, strategy, steps_per_epoch, name=f"dataset({epoch})")
        if steps_per_epoch is not None:
            data = data.take(steps_per_epoch)
        if start:
            data = data.skip(start)
        logs, step = None, start
        for batch in strategy.experimental_distribute_dataset(data):
            callback_list.on_train_batch_begin(step)
            logs = train_function(batch)
            callback_list.on_train_batch_end(step, logs)
            step += 1
            if checkpoint is not None and save_every_steps and step % save_every_steps == 0 \
                    and (steps is None or step < steps):
                checkpoint.save(epoch, step)
            if model.stop_training:
                break
        epoch_logs = _numbers(logs if logs is not None else model.get_metrics_result())
        callback_list.on_epoch_end(epoch, epoch_logs)
        if checkpoint is not None:
            checkpoint.save(epoch + 1, 0)
        if model.stop_training:
            break

    if isinstance(model.optimizer, keras.optimizers.Optimizer) and epochs > position[0]:
        model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs=epoch_logs)
    return model.history


def _check_scope(model, strategy) -> None:
    if model.built:
        checks.check_model(model, strategy)
    checks.check_optimizer(model, strategy)
    checks.check_newton_state(newton_modules(model), strategy)


def _make_newton_losses(model, element_spec) -> None:
    """Makes a subclassed NewtonLossModel's per-output Newton losses now.

    They are otherwise made at the first step, too late for a restore to
    reach their state (a functional model makes them in ``compile``). Only
    the structure of the outputs is needed, traced symbolically from the
    dataset's input spec.
    """
    from keras_newton.newton.newton_loss_model import NewtonLossModel  # noqa: PLC0415

    if isinstance(model, NewtonLossModel) and model._newton_losses is not None \
            and not model._newton_wrappers:
        x_spec, _, _ = keras.utils.unpack_x_y_sample_weight(element_spec)
        inputs = tf.nest.map_structure(
            lambda spec: keras.KerasTensor(spec.shape, spec.dtype.name), x_spec)
        model._wrappers_for(model.compute_output_spec(inputs))


def _train_function(model, strategy):
    """One step on a distributed batch; returns the global batch's logs (see ``fit``)."""

    def reduce(value):
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)

    def one_step(batch):
        outputs = strategy.run(model.train_step, args=(batch,))
        if not isinstance(outputs, dict):
            return tf.nest.map_structure(reduce, outputs)
        # In cross-replica context a metric reads the sum of all replicas'
        # accumulators (an all-reduce under several workers).
        metrics = model.get_metrics_result()
        return {name: metrics[name] if name in metrics else tf.nest.map_structure(reduce, value)
                for name, value in outputs.items()}

    if model.run_eagerly:
        return one_step
    # XLA with a strategy attached is off in Keras (and fails under Mirrored).
    jit = bool(model.jit_compile) and not tf.distribute.has_strategy() \
        and strategy is tf.distribute.get_strategy()
    return tf.function(one_step, reduce_retracing=True, jit_compile=jit)


def _steps(dataset, steps_per_epoch):
    """Batches per epoch for the progress bar, or ``None`` when unknown."""
    cardinality = int(dataset.cardinality().numpy())
    if steps_per_epoch is not None:
        return steps_per_epoch if cardinality < 0 else min(steps_per_epoch, cardinality)
    return cardinality if cardinality >= 0 else None


def _numbers(logs) -> dict:
    """Logs as Python floats (NumPy arrays where not scalar), as ``model.fit`` reports them."""
    numbers = {}
    for name, value in dict(logs).items():
        array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        numbers[name] = float(array) if array.size == 1 else array
    return numbers
