"""The argument checks of :func:`keras_newton.distribute.fit`, each naming its argument.

A model whose variables were made outside the strategy's scope would train
plain per-worker copies that silently drift apart; a dataset whose global
batch does not split evenly over the replicas gives replicas unequal
shards, whose per-replica means Keras' own ``train_step`` weighs unequally.
Both are refused before the first step.
"""

import keras
import tensorflow as tf

from keras_newton._validation import int_at_least, one_of


def tf_variable(variable):
    """The ``tf.Variable`` (or distributed variable) behind a Keras variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def check_strategy(model, strategy):
    """The strategy to train under: ``strategy``, else the one the model was built in.

    Raises:
      TypeError: ``strategy`` is not a ``tf.distribute.Strategy``.
    """
    if strategy is None:
        return model.distribute_strategy
    if not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(f"strategy must be a tf.distribute.Strategy or None, got {strategy!r}.")
    return strategy


def check_compiled(model) -> None:
    """Checks that ``model`` is a compiled Keras model.

    Raises:
      TypeError: ``model`` is not a ``keras.Model``.
      ValueError: it is not compiled.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}.")
    if not getattr(model, "compiled", False) or model.optimizer is None:
        raise ValueError("model is not compiled: call model.compile(optimizer, loss, ...) "
                         "inside strategy.scope() before fit.")


def check_model(model, strategy) -> None:
    """Checks that ``model``'s variables were made in ``strategy``'s scope.

    Raises:
      ValueError: it has no trainable variables, or its variables were not
        created in ``strategy.scope()``.
    """
    if not model.trainable_variables:
        raise ValueError("model has no trainable variables: there is nothing to train.")
    outside = _made_outside(model.variables, strategy)
    if outside:
        raise ValueError(
            f"model was not built in the scope of strategy={strategy!r}: its variables "
            f"{outside[:3]} were created outside strategy.scope(). Build and compile the model "
            "inside `with strategy.scope():`, and pass that strategy.")


def check_newton_state(modules, strategy) -> None:
    """Checks that the Newton losses' state variables belong to ``strategy``.

    Raises:
      ValueError: a ``NewtonLoss`` was made outside ``strategy.scope()``.
    """
    for module in modules:
        for variable in module.variables:
            if not strategy.extended.variable_created_in_scope(variable):
                raise ValueError(
                    f"model's loss holds Newton state ({variable.name}) created outside the "
                    f"scope of strategy={strategy!r}: make the NewtonLoss inside "
                    "`with strategy.scope():`, where the model is compiled.")


def check_optimizer(model, strategy) -> None:
    """Checks that the optimizer's variables were created in ``strategy``'s scope.

    Raises:
      ValueError: the model was compiled outside ``strategy.scope()``.
    """
    outside = _made_outside(model.optimizer.variables, strategy)
    if outside:
        raise ValueError(
            f"model was compiled outside the scope of strategy={strategy!r}: optimizer "
            f"variables {outside[:3]} were created outside strategy.scope(). Compile the model "
            "inside `with strategy.scope():`.")


def _made_outside(variables, strategy) -> list:
    """The paths of the Keras ``variables`` not created in ``strategy.scope()``."""
    return [v.path for v in variables
            if not strategy.extended.variable_created_in_scope(tf_variable(v))]


def check_counts(epochs, steps_per_epoch, checkpoint_dir, save_every_steps, verbose):
    """Checks the loop's integer arguments; returns ``verbose`` resolved (``"auto"`` is 1).

    Raises:
      ValueError: an argument is out of range, or ``save_every_steps``
        without ``checkpoint_dir``.
      TypeError: ``checkpoint_dir`` is not a string or path.
    """
    int_at_least(epochs, "epochs", minimum=1)
    int_at_least(steps_per_epoch, "steps_per_epoch", minimum=1, allow_none=True)
    int_at_least(save_every_steps, "save_every_steps", minimum=1, allow_none=True)
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, bytes)) \
            and not hasattr(checkpoint_dir, "__fspath__"):
        raise TypeError(f"checkpoint_dir must be a path or None, got {checkpoint_dir!r}.")
    if save_every_steps is not None and checkpoint_dir is None:
        raise ValueError("save_every_steps needs a checkpoint_dir to save to.")
    one_of(verbose, ("auto", 0, 1, 2), "verbose")
    return 1 if verbose == "auto" else verbose


def check_dataset(dataset, strategy, steps_per_epoch, name: str = "dataset") -> None:
    """Checks that ``dataset`` is a batched ``tf.data.Dataset`` the replicas can share.

    The global batch size is the static batch dimension where the dataset
    has one (``drop_remainder=True``), else the size of its first batch.

    Raises:
      TypeError: ``dataset`` is not a ``tf.data.Dataset``.
      ValueError: it is not batched, its batch size is not a multiple of
        ``strategy.num_replicas_in_sync``, or it is infinite and
        ``steps_per_epoch`` is ``None``.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"{name} must be a tf.data.Dataset (or a function of the epoch "
                        f"returning one), got {type(dataset).__name__}.")
    specs = tf.nest.flatten(dataset.element_spec)
    shapes = [getattr(spec, "shape", None) for spec in specs]
    if not shapes or any(shape is None or shape.rank == 0 for shape in shapes):
        raise ValueError(f"{name} must yield batches (tensors with a batch dimension); "
                         f"its elements are {dataset.element_spec}. Call "
                         "dataset.batch(global_batch_size).")
    leading = {shape[0] for shape in shapes if shape.rank is not None and shape[0] is not None}
    if len(leading) > 1:
        raise ValueError(f"{name}'s components have different first dimensions "
                         f"{sorted(leading)}: is it batched? Its elements are "
                         f"{dataset.element_spec}. Call dataset.batch(global_batch_size).")
    shape = shapes[0]
    if steps_per_epoch is None and \
            dataset.cardinality().numpy() == tf.data.INFINITE_CARDINALITY:
        raise ValueError(f"{name} is infinite (repeated), so steps_per_epoch must be given.")
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return
    batch = shape[0] if shape.rank is not None else None
    if batch is None:  # batched without drop_remainder: read the first batch's size
        first = next(iter(dataset.take(1)), None)
        if first is None:
            raise ValueError(f"{name} is empty.")
        batch = int(tf.shape(tf.nest.flatten(first)[0])[0])
    if batch % replicas:
        raise ValueError(
            f"{name} yields batches of {batch}, not a multiple of the {replicas} replicas of "
            f"the strategy: batch it to the global batch size, a multiple of {replicas} "
            "(per-replica batch times strategy.num_replicas_in_sync).")
