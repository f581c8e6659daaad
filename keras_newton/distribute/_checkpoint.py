"""The training state as one ``tf.train.Checkpoint``, written as ``tf.distribute`` requires.

What a resumed run needs to take the steps the interrupted one would have
taken is, variable for variable:

* the model's variables (weights, non-trainable state, seed generators),
* the optimizer's variables (iteration count, learning rate, slots),
* the compiled metrics' accumulators (so the epoch's logs continue),
* the Newton state of every Newton loss the model trains with: the adaptive
  damping's ratio, radius and last ``λ``
  (:class:`~keras_newton.newton.adaptive_damping.DampingState`) and the
  cached Hessian factorization of an estimate refreshed every ``k`` steps
  (:class:`~keras_newton.newton._curvature_cache.CurvatureCache`),
* the data position: the epoch and the number of batches of it already
  trained on.

They are listed explicitly rather than found through the model's attribute
tracking, which in Keras 3 sees neither the metrics nor the Newton losses.
The cache creates its variables at its first call; ``tf.train.Checkpoint``
restores such late variables when they are created (deferred restoration),
so a restore before the first step still reaches them.

Writing follows the multi-worker pattern of TensorFlow's documentation
(`Multi-worker training with Keras
<https://www.tensorflow.org/tutorials/distribute/multi_worker_with_keras>`_):
every worker calls save, because saving distributed variables may run
collective operations, but only the chief writes to ``checkpoint_dir``; the
other workers write to a private temporary folder that is deleted after each
save. ``tf.train.CheckpointManager`` writes the data files first and the
``checkpoint`` index file last (by a rename), so a job killed at any moment
leaves the index naming the last complete checkpoint.
"""

import shutil
import tempfile

import tensorflow as tf

from keras_newton.distribute._checks import tf_variable as _tf_variable


def newton_losses(model) -> list:
    """The Newton losses ``model`` trains with, in a fixed order.

    Those passed to ``compile(loss=...)`` (any structure) and, for a
    :class:`keras_newton.NewtonLossModel`, its per-output wrappers.
    """
    from keras_newton.newton.newton_loss import NewtonLoss  # noqa: PLC0415

    found = [loss for loss in tf.nest.flatten(getattr(model, "loss", None))
             if isinstance(loss, NewtonLoss)]
    wrappers = getattr(model, "_newton_wrappers", None) or {}
    found += [wrappers[index] for index in sorted(wrappers)]
    return found


def newton_modules(model) -> list:
    """The ``tf.Module``s holding the Newton state of ``model``'s Newton losses."""
    modules = []
    for loss in newton_losses(model):
        for part in (loss.state.damping_state, loss.state.hessian_cache):
            if part is not None:
                modules.append(part)
    return modules


class TrainingCheckpoint:
    """Saves and restores a model's training state and data position.

    Args:
      model: a built, compiled Keras model whose optimizer is built.
      strategy: the ``tf.distribute.Strategy`` the model trains under.
      directory: the checkpoint folder (shared by all workers).
      max_to_keep: how many checkpoints the chief keeps.

    Attributes:
      epoch: ``tf.Variable`` (int64), the epoch the saved position is in.
      step: ``tf.Variable`` (int64), how many batches of that epoch were
        trained on.
    """

    def __init__(self, model, strategy, directory: str, max_to_keep: int = 2):
        self.directory = directory
        self.is_chief = bool(strategy.extended.should_checkpoint)
        with tf.init_scope():
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = tf.train.Checkpoint(
            weights=[_tf_variable(v) for v in model.variables],
            optimizer=[_tf_variable(v) for v in model.optimizer.variables],
            metrics=[_tf_variable(v) for v in model.metrics_variables],
            newton=newton_modules(model),
            epoch=self.epoch,
            step=self.step,
        )
        # Only the chief writes where the others read; a non-chief's copy goes
        # to a private folder made for each save and deleted after it (the
        # copy exists only so that the worker takes part in the save).
        self._manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep) if self.is_chief else None
        self._task_id = _task_id(strategy)
        self._restore_status = None

    def save(self, epoch: int, step: int) -> None:
        """Saves the state with the data position ``(epoch, step)``."""
        self.epoch.assign(epoch)
        self.step.assign(step)
        if self.is_chief:
            self._manager.save()
            return
        folder = tempfile.mkdtemp(prefix=f"keras_newton_worker{self._task_id}_")
        try:
            tf.train.CheckpointManager(self.checkpoint, folder, max_to_keep=1).save()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def restore(self):
        """Restores the newest checkpoint of the folder, if there is one.

        Returns:
          ``(epoch, step)`` of the restored position, or ``None`` when the
          folder holds no checkpoint.

        Raises:
          AssertionError or ValueError: (from ``tf.train``) the checkpoint
            does not match the model (another architecture, optimizer or
            Newton loss).
        """
        path = tf.train.latest_checkpoint(self.directory)
        if path is None:
            return None
        status = self.checkpoint.restore(path)
        status.assert_existing_objects_matched()
        # Kept alive: the Hessian cache's variables, created at its first
        # call, are restored then from this status (deferred restoration).
        self._restore_status = status
        return int(self.epoch.numpy()), int(self.step.numpy())


def _task_id(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", None)
    return 0 if task_id is None else int(task_id)
