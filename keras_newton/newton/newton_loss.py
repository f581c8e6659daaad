"""``NewtonLoss``: a Keras loss that trains on Newton targets of another loss."""

import keras
import tensorflow as tf

from keras_newton.newton import _output_space as output_space
from keras_newton.newton._derivatives import resolve_loss
from keras_newton.newton._legacy_options import config_with_step
from keras_newton.newton.spec import DEFAULT_CURVATURE, DEFAULT_DAMPING, NewtonStep, as_newton_step
from keras_newton.newton.target import _newton_target


@keras.saving.register_keras_serializable(package="keras_newton")
class NewtonLoss(keras.losses.Loss):
    """Newton loss of a wrapped loss (Petersen et al., NeurIPS 2024).

    For each sample the Newton target ``z*_i = y_i - (M + λI)^{-1} g_i`` of the
    wrapped loss is computed (gradient stopped) and the per-sample value

    .. math::

        \\ell^\\star_i = \\tfrac12 \\lVert z^\\star_i - y_i \\rVert^2

    is returned, so reductions and ``sample_weight`` behave as for any Keras
    loss. Its gradient at ``y_i`` is the Newton step ``(M + λI)^{-1} g_i``
    (divided by the batch size under the default reduction). The curvature
    ``M`` is the empirical Hessian (default), the empirical Fisher, or the
    sample's own Hessian; cross-sample blocks of the batch Hessian are
    dropped (they vanish for per-sample losses). Sample weights scale the
    Newton loss, not the curvature.

    The value of the Newton loss is not the wrapped loss; to see the original
    loss in ``fit()`` logs, add it as a metric or use
    :class:`keras_newton.NewtonLossModel`.

    Non-finite samples: a sample whose output (or gradient) is NaN or inf gets
    no step and is left out of the batch curvature, and this loss sends a zero
    gradient back to its output. That cannot keep NaN out of the weights,
    though: Keras' own ``train_step`` backpropagates through the network and
    applies the gradients, and a NaN activation times a zero output gradient
    is still NaN. :class:`keras_newton.NewtonLossModel`, whose ``train_step``
    drops non-finite weight gradients, is the way to get that guarantee.

    Example:

    >>> import keras, numpy as np, keras_newton as kn
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> model.compile("adam", loss=kn.NewtonLoss(
    ...     keras.losses.CategoricalCrossentropy(from_logits=True),
    ...     curvature="hessian", damping=1e-3))
    >>> x = np.random.rand(8, 4).astype("float32")
    >>> y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    >>> history = model.fit(x, y, epochs=1, verbose=0)

    ``damping="adaptive"`` sets ``λ`` every step by Levenberg-Marquardt
    (:class:`keras_newton.newton.AdaptiveDamping`); its state is saved with
    the model's weights:

    >>> adaptive = kn.NewtonLoss("mse", damping="adaptive")
    >>> float(adaptive.damping_state.ratio.numpy())
    0.01

    Everything about the Newton step beyond ``curvature`` and ``damping``
    (estimated Hessians, solver, derivative source) is said by a
    :class:`keras_newton.NewtonStep`:

    >>> loss = kn.NewtonLoss("mse", kn.NewtonStep(
    ...     "hessian", damping=1e-2, estimate=kn.newton.HessianEstimate(rank=2)))

    Args:
      loss: the loss to wrap: a ``keras.losses.Loss``, a loss name (``"mse"``)
        or a callable returning per-sample values.
      step: a :class:`keras_newton.NewtonStep` (or its config, or a curvature
        name); default: the empirical Hessian with ``λ = 1e-3``.
      curvature, damping: shortcuts for ``NewtonStep(curvature, damping)``
        (``"hessian"``, ``"fisher"`` or ``"elementwise_hessian"``; Tikhonov
        ``λ >= 0`` on the per-sample scale, or ``"adaptive"``), when no
        ``step`` is given.
      name, reduction, dtype: as for ``keras.losses.Loss``.
    """

    def __init__(self, loss, step=None, *, curvature=DEFAULT_CURVATURE, damping=DEFAULT_DAMPING,
                 name: str = "newton_loss", reduction: str = "sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.loss = resolve_loss(loss)
        self.step = as_newton_step(step, curvature, damping)
        self.step.check_loss(self.loss)
        # What the step keeps across calls, one object: the cache of a Hessian
        # refreshed every k steps and the adaptive damping's ratio (each None
        # where the spec needs none).
        self.state = self.step.new_state()
        # Read when a call is traced: NewtonLossModel turns it off to evaluate,
        # and sets the [N] mask of samples it leaves out of the step.
        self.adapt_damping = True
        self.keep = None

    @property
    def hessian_cache(self):
        """The state's Hessian cache (``None`` unless refreshed every ``k > 1`` steps)."""
        return self.state.hessian_cache

    @property
    def damping_state(self):
        """The state's adaptive-damping variables (``None`` for a fixed ``λ``)."""
        return self.state.damping_state

    @property
    def damping(self):
        """The ``λ`` the last step used (a variable) for adaptive damping, else the fixed ``λ``."""
        if self.damping_state is None:
            return self.step.damping.value()
        return self.damping_state.damping

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Before Keras converts them, so that the message names the argument.
        output_space.reject_composite(y_true, "y_true")
        output_space.reject_composite(y_pred, "y_pred")
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        # Keras hands a Python list over as a list of scalar tensors.
        y_true, y_pred = output_space.as_tensors(y_true), output_space.as_tensors(y_pred)
        if self.damping_state is not None:
            self.damping_state.adapting = self.adapt_damping
        target = _newton_target(self.loss, y_true, y_pred, self.step, self.state, self.keep)
        difference = target - y_pred
        # A non-finite output must not send NaN back into the weights.
        difference = tf.where(
            tf.math.is_finite(difference), difference, tf.zeros_like(difference)
        )
        axes = list(range(1, y_pred.shape.rank))
        return 0.5 * tf.reduce_sum(tf.square(difference), axis=axes)

    # Keras saves a compiled loss's own variables with the model's weights
    # (``save_weights``, ``BackupAndRestore``, ``.keras``): the adaptive ratio
    # survives a resumed run.
    def save_own_variables(self, store):
        if self.damping_state is not None:
            for key, variable in self.damping_state.values().items():
                store[key] = variable.numpy()

    def load_own_variables(self, store):
        if self.damping_state is not None and "ratio" in store:
            # Files saved before a key existed lack it; assign() checks the values.
            self.damping_state.assign({key: store[key][()] for key in
                                       self.damping_state.values() if key in store})

    def get_config(self):
        config = super().get_config()
        config.update(
            loss=keras.saving.serialize_keras_object(self.loss),
            step=keras.saving.serialize_keras_object(self.step),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        # Configs saved before the NewtonStep spec hold its options flat.
        return cls(**config_with_step(config, NewtonStep, config["loss"]))
