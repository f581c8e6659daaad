"""Training under any ``tf.distribute`` strategy, several machines included, resumably.

On one machine, ``model.fit`` under ``tf.distribute.MirroredStrategy``
trains Newton losses on the global batch and needs nothing from this
package. Across machines, Keras 3.15's ``fit`` fails under
``tf.distribute.MultiWorkerMirroredStrategy``; ``fit`` here is the
replacement: it runs the model's own ``train_step`` with ``strategy.run``,
drives Keras callbacks, and with a ``checkpoint_dir`` saves the whole
training state (weights, optimizer, metrics, Newton state, data position)
with ``tf.train.CheckpointManager``, so that a restarted job resumes where
its last checkpoint left it.

The one public name is ``fit``. The private modules: ``_fit`` (the loop
and its logs), ``_checkpoint`` (the training state as one
``tf.train.Checkpoint``, written by the chief only) and ``_checks`` (the
argument checks).
"""

from keras_newton.distribute._fit import fit

__all__ = ["fit"]
