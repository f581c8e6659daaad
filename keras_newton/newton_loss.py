"""``NewtonLoss``: a Keras loss that trains on Newton targets of another loss."""

import keras
import tensorflow as tf

from keras_newton import curvature as curvature_lib
from keras_newton.curvature_cache import CurvatureCache
from keras_newton.damped_solve import validate_indefinite
from keras_newton.hessian_estimates import validate_hessian_options
from keras_newton.newton_target import (
    choose_solver,
    newton_target,
    resolve_loss,
    validate_damping,
)


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

    Args:
      loss: the loss to wrap: a ``keras.losses.Loss``, a loss name (``"mse"``)
        or a callable returning per-sample values.
      curvature: ``"hessian"``, ``"fisher"`` or ``"elementwise_hessian"``.
      damping: Tikhonov damping ``λ >= 0`` (per-sample scale).
      indefinite: ``"abs"`` (saddle-free, default) or ``"clip"``: how negative
        curvature is treated by the dense and affordable-Hessian solves.
        ``solver="cg"`` cannot apply it: it stops at the first search
        direction ``p`` with ``pᵀ(H_i + λI)p ≤ 0`` and returns the iterate so
        far (``g_i / max(λ, 1)`` if that is the first iteration). Hence
        ``"auto"`` picks CG only with ``"abs"``, and ``"cg"`` with ``"clip"``
        raises.
      use_closed_form: use closed-form derivatives for MSE / cross-entropies.
      solver: ``"auto"``, ``"dense"``, ``"woodbury"`` (Fisher, many outputs)
        or ``"cg"`` (element-wise Hessian, many outputs; for indefinite
        Hessians its step differs from the dense ``"abs"`` step, see
        ``indefinite``); ``"auto"`` switches to Woodbury / CG above 256
        outputs; see :func:`keras_newton.newton_target`.
      cg_max_iterations, cg_tolerance: conjugate-gradient settings.
      hessian_samples: empirical Hessian only: estimate it from the first
        ``s`` samples of each batch (``None``: all); see
        :mod:`keras_newton.hessian_estimates`.
      hessian_rank: empirical Hessian only: rank-``r`` randomized sketch from
        ``2r`` Hessian-vector products (``None``: full ``m×m`` matrix).
      hessian_seed: seed of the sketch's probes.
      hessian_refresh_every: empirical Hessian only: recompute its
        factorization every ``k`` calls and reuse it in between (``1``:
        every call); the loss then holds it in ``tf.Variable``s, see
        :mod:`keras_newton.curvature_cache` (single replica only).
      hessian_products: ``"autodiff"`` (exact) or ``"finite_differences"``
        (gradients only, e.g. for ``ShortestPathLoss(unroll=False)`` under
        XLA) Hessian-vector products of the ``hessian_rank`` sketch.
      name, reduction, dtype: as for ``keras.losses.Loss``.
    """

    def __init__(
        self,
        loss,
        curvature: str = "hessian",
        damping: float = 1e-3,
        indefinite: str = "abs",
        use_closed_form: bool = True,
        solver: str = "auto",
        cg_max_iterations: int = 50,
        cg_tolerance: float = 1e-5,
        hessian_samples=None,
        hessian_rank=None,
        hessian_seed: int = 0,
        hessian_refresh_every: int = 1,
        hessian_products: str = "autodiff",
        name: str = "newton_loss",
        reduction: str = "sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.curvature = curvature_lib.validate_curvature(curvature)
        self.damping = validate_damping(damping)
        self.indefinite = validate_indefinite(indefinite)
        self.use_closed_form = bool(use_closed_form)
        self.loss = resolve_loss(loss)
        curvature_lib.check_protocol_supports(self.loss, self.curvature)
        # Names and curvature compatibility are checked now; "auto" is
        # resolved by shape when called.
        choose_solver(solver, self.curvature, self.damping, 0, None, self.loss,
                      self.indefinite)
        self.solver = solver
        self.cg_max_iterations = int(cg_max_iterations)
        self.cg_tolerance = float(cg_tolerance)
        validate_hessian_options(self.curvature, hessian_samples, hessian_rank,
                                 hessian_seed, hessian_refresh_every, self.loss,
                                 hessian_products)
        self.hessian_products = hessian_products
        self.hessian_samples = hessian_samples
        self.hessian_rank = hessian_rank
        self.hessian_seed = hessian_seed
        self.hessian_refresh_every = hessian_refresh_every
        self.hessian_cache = (
            CurvatureCache(hessian_refresh_every) if hessian_refresh_every > 1 else None
        )

    def call(self, y_true, y_pred):
        target = newton_target(
            self.loss,
            y_true,
            y_pred,
            curvature=self.curvature,
            damping=self.damping,
            indefinite=self.indefinite,
            use_closed_form=self.use_closed_form,
            solver=self.solver,
            cg_max_iterations=self.cg_max_iterations,
            cg_tolerance=self.cg_tolerance,
            hessian_samples=self.hessian_samples,
            hessian_rank=self.hessian_rank,
            hessian_seed=self.hessian_seed,
            hessian_cache=self.hessian_cache,
            hessian_products=self.hessian_products,
        )
        difference = target - y_pred
        # A non-finite output must not send NaN back into the weights.
        difference = tf.where(
            tf.math.is_finite(difference), difference, tf.zeros_like(difference)
        )
        axes = list(range(1, y_pred.shape.rank))
        return 0.5 * tf.reduce_sum(tf.square(difference), axis=axes)

    def get_config(self):
        config = super().get_config()
        config.update(
            loss=keras.saving.serialize_keras_object(self.loss),
            curvature=self.curvature,
            damping=self.damping,
            indefinite=self.indefinite,
            use_closed_form=self.use_closed_form,
            solver=self.solver,
            cg_max_iterations=self.cg_max_iterations,
            cg_tolerance=self.cg_tolerance,
            hessian_samples=self.hessian_samples,
            hessian_rank=self.hessian_rank,
            hessian_seed=self.hessian_seed,
            hessian_refresh_every=self.hessian_refresh_every,
            hessian_products=self.hessian_products,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
