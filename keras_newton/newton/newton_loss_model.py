"""``NewtonLossModel``: a Keras model whose ``fit()`` trains with Newton losses."""

import keras
import tensorflow as tf

from keras_newton._keras_private import Functional, functional_init_arguments
from keras_newton._keras_private import loss_module as keras_loss_module
from keras_newton.newton._distribution import replica_batch_share
from keras_newton.newton._finite_inputs import drop_non_finite_rows, finite_input_rows
from keras_newton.newton.newton_loss import NewtonLoss
from keras_newton.newton._legacy_options import config_with_step
from keras_newton.newton._sample_weights import exclude_invalid_weights
from keras_newton.newton.spec import DEFAULT_CURVATURE, DEFAULT_DAMPING, NewtonStep, as_newton_step


def _per_output(structure, outputs, output_names, default, name):
    """Matches a loss / loss-weight / target structure to the flat outputs.

    Follows Keras' compile rules: one value for every output, a list with an
    entry per output, or a dict keyed by output name (the model's output
    names for list outputs, the keys for dict outputs).
    """
    flat_outputs = tf.nest.flatten(outputs)
    if structure is None:
        return [default] * len(flat_outputs)
    if isinstance(structure, dict):
        names = sorted(outputs) if isinstance(outputs, dict) else list(output_names or ())
        unknown = sorted(set(structure) - set(names))
        if len(names) != len(flat_outputs) or unknown:
            raise ValueError(
                f"{name} is a dict with keys {sorted(structure)}, but the model's "
                f"outputs are named {names or 'nothing (no output names)'}."
            )
        return [structure.get(key, default) for key in names]
    if isinstance(structure, (list, tuple)):
        if len(structure) != len(flat_outputs):
            raise ValueError(
                f"{name} has {len(structure)} entries for {len(flat_outputs)} outputs."
            )
        return list(structure)
    return [structure] * len(flat_outputs)


@keras.saving.register_keras_serializable(package="keras_newton")
class NewtonLossModel(keras.Model):
    """A ``keras.Model`` whose ``train_step`` is the two-stage Newton update.

    Each step (Petersen et al., NeurIPS 2024, eq. 3):

    * (3a) for every output, the Newton target
      ``z* = y - (M + λI)^{-1} g`` of the *compiled* loss of that output,
      as the model's :class:`keras_newton.NewtonStep` says;
    * (3b) one optimizer step of the network on ``½‖z* - f(x)‖²`` (weighted
      by ``loss_weights`` and ``sample_weight``, plus regularization losses).

    ``fit()`` logs the original compiled loss as ``loss`` (what users care
    about) and the Newton loss as ``newton_loss``. Compiled metrics,
    ``sample_weight``, several outputs, mixed precision (the optimizer's loss
    scaling) and ``jit_compile=True`` work as for any model; ``loss``,
    ``loss_weights``, ``y`` and ``sample_weight`` may be single values, lists
    or dicts keyed by output name, as in ``keras.Model.compile``.

    Left-out samples. A sample with a non-finite input is zeroed before the
    forward pass (:mod:`keras_newton.newton._finite_inputs`), and a sample
    with a NaN, infinite or negative ``sample_weight`` (for any output) is
    treated the same (:mod:`keras_newton.newton._sample_weights`): its weight
    becomes 0 for every output, it is left out of every output's batch
    curvature and takes no Newton step, and the logged ``loss`` stays finite.
    The other samples then train exactly as on the batch without it, except
    that the default ``sum_over_batch_size`` reduction still divides by the
    full batch size ``N`` (so the step is ``(N - 1)/N`` times the step on the
    ``N - 1`` remaining samples, for one left-out sample). Samples with
    non-finite labels take no Newton step.

    Under ``tf.distribute`` the batch curvature is that of the global batch,
    and the (3b) loss weighs every sample ``1/N`` of the global batch even
    when the replicas' shards differ in size (a final partial batch), where
    Keras' own reduction weighs a replica's samples ``1/(R n_r)``; so a
    mirrored run takes the single-device steps. Non-finite gradients of a step are replaced
    by zeros, so NaN never reaches the weights (stateful optimizers may
    still move by their momentum); with a ``LossScaleOptimizer`` they are
    passed on, since it skips such steps and lowers its loss scale itself.
    That is where the promise stops: finite inputs whose float16 forward or
    backward pass overflows on every batch keep halving Keras' loss scale,
    and once it reaches 0 Keras' optimizer writes NaN into the weights.

    With ``damping="adaptive"`` (:class:`keras_newton.newton.AdaptiveDamping`)
    each output's ``λ`` is set every training step by Levenberg-Marquardt
    (evaluation does not change it), logged as ``damping``, and saved with
    the weights (``.keras``, ``save_weights``, ``BackupAndRestore``); build
    the model and compile it inside a strategy's scope under
    ``tf.distribute``. For a subclassed model the state is made at its
    first training step, so load saved weights after one.

    Use it functionally or by subclassing:

    >>> import keras, numpy as np, keras_newton as kn
    >>> inputs = keras.Input((4,))
    >>> outputs = keras.layers.Dense(3)(inputs)
    >>> model = kn.NewtonLossModel(inputs, outputs, curvature="fisher")
    >>> model.compile("adam",
    ...     loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    >>> x = np.random.rand(8, 4).astype("float32")
    >>> y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    >>> history = model.fit(x, y, epochs=1, verbose=0)

    Args:
      step: a :class:`keras_newton.NewtonStep` (or its config, or a curvature
        name): how every output's Newton target is computed; an estimated
        Hessian refreshed every ``k`` steps keeps its factorization per output.
      curvature, damping: shortcuts for ``NewtonStep(curvature, damping)``
        (default: ``"hessian"``, ``λ = 1e-3``; ``damping="adaptive"``), when
        no ``step`` is given.
      *args, **kwargs: as for ``keras.Model``.
    """

    def __new__(cls, *args, **kwargs):
        # keras.Model would rewrite this class's bases to include Functional
        # the first time it is called with inputs/outputs, which breaks later
        # subclassed use in the same process; route to a fixed subclass.
        if cls is NewtonLossModel and functional_init_arguments(args, kwargs):
            cls = FunctionalNewtonLossModel
        return super().__new__(cls, *args, **kwargs)

    def __init__(self, *args, step=None, curvature=DEFAULT_CURVATURE, damping=DEFAULT_DAMPING,
                 **kwargs):
        self.step = as_newton_step(step, curvature, damping)
        # Newton-loss wrappers per output, kept across steps so that cached
        # curvature (HessianEstimate.refresh_every > 1) persists; reset by compile().
        object.__setattr__(self, "_newton_wrappers", {})
        super().__init__(*args, **kwargs)
        self.newton_loss_tracker = keras.metrics.Mean(name="newton_loss")
        self._newton_losses = None
        self._newton_loss_weights = None

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, **kwargs):
        super().compile(
            optimizer=optimizer, loss=loss, loss_weights=loss_weights, **kwargs
        )
        self._newton_losses = loss
        self._newton_loss_weights = loss_weights
        self._newton_wrappers.clear()
        if isinstance(self, Functional) and loss is not None:
            # Made now, not at the first step, so that their state (adaptive
            # damping) exists when saved weights are loaded into the model.
            with self.distribute_strategy.scope():
                self._wrappers_for(self._outputs_struct)

    def _wrappers_for(self, y_pred) -> list:
        """The Newton-loss wrapper of each output (``None`` where it has no loss)."""
        names = getattr(self, "output_names", None)
        losses = _per_output(self._newton_losses, y_pred, names, None, "loss")
        wrappers = []
        for index, loss in enumerate(losses):
            if loss is not None and index not in self._newton_wrappers:
                self._newton_wrappers[index] = NewtonLoss(
                    loss, self.step,
                    reduction=getattr(loss, "reduction", "sum_over_batch_size"))
            wrappers.append(None if loss is None else self._newton_wrappers[index])
        return wrappers

    def _damping_logs(self) -> dict:
        """The ``λ`` each output's adaptive damping used in the last step."""
        adaptive = {index: wrapper for index, wrapper in sorted(self._newton_wrappers.items())
                    if wrapper.damping_state is not None}
        # Tensors, not the variables: run eagerly, Keras rebuilds the logs'
        # structure and cannot rebuild a variable.
        if len(adaptive) == 1:
            return {"damping": tf.convert_to_tensor(
                next(iter(adaptive.values())).damping_state.damping)}
        names = list(getattr(self, "output_names", None) or [])
        return {f"damping_{names[i] if i < len(names) else i}":
                tf.convert_to_tensor(w.damping_state.damping) for i, w in adaptive.items()}

    def _newton_loss(self, y, y_pred, sample_weight, training=True, excluded=None):
        names = getattr(self, "output_names", None)
        wrappers = self._wrappers_for(y_pred)
        weights = _per_output(self._newton_loss_weights, y_pred, names, 1.0, "loss_weights")
        targets = _per_output(y, y_pred, names, None, "y")
        outputs = tf.nest.flatten(y_pred)
        sample_weights = _per_output(sample_weight, y_pred, names, None, "sample_weight")
        total = 0.0
        for wrapper, weight, target, output, sw in zip(
            wrappers, weights, targets, outputs, sample_weights
        ):
            if wrapper is None:
                continue
            # Evaluation must not adapt the damping (read when traced).
            wrapper.adapt_damping = training
            # Excluded samples: out of the curvature, no step (weight 0 too).
            wrapper.keep = None if excluded is None else tf.logical_not(excluded)
            try:
                term = wrapper(target, output, sample_weight=sw)
            finally:
                wrapper.keep = None
            if wrapper.reduction in ("sum_over_batch_size", "mean"):
                # Weigh every sample 1/N of the global batch, also when the
                # replicas' shards differ in size (a final partial batch).
                term *= tf.cast(replica_batch_share(tf.shape(output)[0]), term.dtype)
            total += weight * term
        if self.losses:
            # Keras losses already divide by the replica count; do the same.
            regularization = tf.add_n([tf.cast(l, tf.float32) for l in self.losses])
            total += keras_loss_module.scale_loss_for_distribution(regularization)
        return total

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if self._newton_losses is None:
            raise ValueError("NewtonLossModel needs a loss in compile(loss=...).")
        # NaN input rows would reach every weight gradient through 0 * NaN.
        finite_inputs = finite_input_rows(x)
        x, sample_weight = drop_non_finite_rows(x, sample_weight)
        excluded = None if finite_inputs is None else tf.logical_not(finite_inputs)
        # So would a NaN sample weight; it (and inf, negative) excludes its sample.
        sample_weight, excluded = exclude_invalid_weights(sample_weight, excluded)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            newton_loss = self._newton_loss(y, y_pred, sample_weight, excluded=excluded)
            scaled = self.optimizer.scale_loss(newton_loss)
        # The original loss is only logged, never differentiated.
        loss = self._compute_loss(
            x=x, y=y, y_pred=tf.nest.map_structure(tf.stop_gradient, y_pred),
            sample_weight=sample_weight, training=True,
        )
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        self._loss_tracker.update_state(
            keras_loss_module.unscale_loss_for_distribution(loss),
            sample_weight=batch_size,
        )
        self.newton_loss_tracker.update_state(
            keras_loss_module.unscale_loss_for_distribution(newton_loss),
            sample_weight=batch_size,
        )
        weights = self.trainable_weights
        gradients = tape.gradient(scaled, weights)
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            # Zeroing (rather than a tf.cond around apply_gradients) stays
            # valid under XLA and tf.distribute, whose optimizer merge_call
            # cannot sit inside a cond. A LossScaleOptimizer must see the
            # non-finite gradients: it skips the step and lowers its scale.
            finite = tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(g)) for g in gradients if g is not None]
            )
            gradients = [
                None if g is None else tf.where(finite, g, tf.zeros_like(g))
                for g in gradients
            ]
        self.optimizer.apply_gradients(zip(gradients, weights))
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        logs.update(self._damping_logs())
        return logs

    def test_step(self, data):
        # Evaluation reports both losses too (validation Newton loss included).
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        loss = self._compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
        )
        batch_size = tf.shape(tf.nest.flatten(x)[0])[0]
        self._loss_tracker.update_state(
            keras_loss_module.unscale_loss_for_distribution(loss),
            sample_weight=batch_size,
        )
        if self._newton_losses is not None:
            newton_loss = self._newton_loss(y, y_pred, sample_weight, training=False)
            self.newton_loss_tracker.update_state(
                keras_loss_module.unscale_loss_for_distribution(newton_loss),
                sample_weight=batch_size,
            )
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # compile() is overridden only to remember the per-output losses, so the
    # stock compile config still describes it; Keras refuses to replay it for
    # overridden compile() methods, hence this explicit replay.
    def get_compile_config(self):
        return super().get_compile_config()

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        config["step"] = keras.saving.serialize_keras_object(self.step)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Configs saved before the NewtonStep spec hold its options flat.
        return super().from_config(config_with_step(config, NewtonStep), custom_objects)


@keras.saving.register_keras_serializable(package="keras_newton")
class FunctionalNewtonLossModel(NewtonLossModel, Functional):
    """What ``NewtonLossModel(inputs, outputs, ...)`` builds (a Functional)."""
