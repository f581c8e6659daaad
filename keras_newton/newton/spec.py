"""``NewtonStep``: the one specification of how step (3a) computes ``z*``.

Petersen et al. (2024), eq. (3a): a damped Newton step on the loss in output
space,

.. math::

    z^\\star_i = y_i - (M + λ I)^{-1} g_i ,

is said once, by five choices, each owned by one concept:

==============  ==========================================================
``curvature``   ``M``: ``"hessian"`` (empirical Hessian ``H̄``, default),
                ``"fisher"`` (empirical Fisher ``F̄``) or
                ``"elementwise_hessian"`` (each sample's ``H_i``)
``damping``     the rule for ``λ``: a number (a fixed λ,
                :class:`~keras_newton.newton.damping.FixedDamping`) or a rule
``estimate``    how ``H̄`` is estimated:
                :class:`~keras_newton.newton.hessian_estimate.HessianEstimate`
                (exact, subsampled, sketched, refreshed every ``k`` steps)
``solver``      how ``(M + λI)^{-1} g`` is solved:
                :class:`~keras_newton.newton.solvers.Solver` or its method
                name (``"auto"``, ``"dense"``, ``"woodbury"``, ``"cg"``)
``derivatives`` where ``g_i`` and ``H_i`` come from: ``"auto"``,
                ``"protocol"``, ``"closed_form"`` or ``"autodiff"``
                (:mod:`keras_newton.newton._derivatives`)
==============  ==========================================================

Everything that can be checked without the loss and the batch is checked
when the spec is built; :meth:`NewtonStep.check_loss` adds what depends on
the loss. :class:`keras_newton.NewtonLoss`,
:class:`keras_newton.NewtonLossModel` and :func:`keras_newton.newton_target`
take a spec (or the ``curvature`` / ``damping`` shortcuts).

What a spec keeps across steps is one object, :meth:`NewtonStep.new_state`
(a :class:`NewtonState`: the Hessian cache of a refreshed estimate and the
variables of an adaptive damping), made once and threaded through every
call, as optax's ``init`` / ``update`` do.

Example:

>>> import keras_newton as kn
>>> step = kn.NewtonStep(
...     curvature="hessian", damping=1e-2,
...     estimate=kn.newton.HessianEstimate(samples=16, rank=8),
...     solver=kn.newton.Solver("dense", indefinite="clip"))
>>> kn.NewtonStep.from_config(step.get_config()) == step
True
>>> kn.NewtonStep("fisher", damping=0.1).curvature
'fisher'
"""

import keras

from keras_newton.newton import _derivatives as derivatives_lib
from keras_newton.newton._configurable import Configurable
from keras_newton.newton.curvatures import validate_curvature
from keras_newton.newton.damping import as_damping_rule
from keras_newton.newton.hessian_estimate import HessianEstimate
from keras_newton.newton.solvers import as_solver


@keras.saving.register_keras_serializable(package="keras_newton")
class NewtonStep(Configurable):
    """How the Newton target ``z* = y - (M + λI)^{-1} g`` is computed (see module).

    Args:
      curvature: ``"hessian"``, ``"fisher"`` or ``"elementwise_hessian"``.
      damping: ``λ >= 0`` (a fixed Tikhonov damping on the per-sample scale)
        or a damping rule.
      estimate: a :class:`HessianEstimate` (``None``: exact);
        ``curvature="hessian"`` only unless exact.
      solver: a :class:`Solver` or a method name.
      derivatives: ``"auto"`` (the loss's protocol, else a closed form, else
        autodiff), or one of those forced.
    """

    def __init__(self, curvature: str = "hessian", damping=1e-3, estimate=None,
                 solver="auto", derivatives: str = "auto"):
        self.curvature = validate_curvature(curvature)
        self.damping = as_damping_rule(damping)
        if isinstance(estimate, dict):
            estimate = HessianEstimate.from_config(estimate.get("config", estimate))
        self.estimate = estimate if estimate is not None else HessianEstimate()
        self.estimate.check(self.curvature)
        self.solver = as_solver(solver)
        self.solver.check(self.curvature, self.damping.positive)
        self.derivatives = derivatives_lib.validate_source(derivatives)

    def check_loss(self, loss) -> None:
        """Raises a ValueError if ``loss`` cannot be stepped as this spec says."""
        derivatives_lib.check_loss(loss, self.curvature, self.derivatives)
        protocol = derivatives_lib.uses_protocol(loss, self.derivatives)
        self.estimate.check_loss(loss, protocol)
        self.solver.check_loss(loss, protocol)

    @classmethod
    def from_options(cls, loss=None, **options) -> "NewtonStep":
        """Deprecated: the spec of the flat keyword options of earlier versions.

        ``curvature``, ``damping``, ``indefinite``, ``use_closed_form``,
        ``solver``, ``cg_max_iterations``, ``cg_tolerance``,
        ``hessian_samples``, ``hessian_rank``, ``hessian_seed``,
        ``hessian_refresh_every`` and ``hessian_products``; see
        :mod:`keras_newton.newton._legacy_options`. Build the
        :class:`NewtonStep` (with a :class:`HessianEstimate` and a
        :class:`~keras_newton.newton.solvers.Solver`) instead; old configs
        load without this method.
        """
        from keras_newton._deprecation import warn_moved
        from keras_newton.newton._legacy_options import step_from_options

        warn_moved("NewtonStep.from_options", "NewtonStep(curvature, damping, estimate, solver)")
        return step_from_options(cls, loss, **options)

    def new_state(self) -> "NewtonState":
        """The state a caller keeps across calls of this step (see :class:`NewtonState`).

        Create it eagerly (under ``tf.distribute``, inside the strategy's
        scope) and pass the same object to every
        :func:`~keras_newton.newton.target.newton_target` call of this spec.
        """
        return NewtonState(self.estimate.new_cache(), self.damping.new_state())

    def get_config(self) -> dict:
        return {
            "curvature": self.curvature,
            "damping": keras.saving.serialize_keras_object(self.damping),
            "estimate": self.estimate.get_config(),
            "solver": self.solver.get_config(),
            "derivatives": self.derivatives,
        }

    def __repr__(self) -> str:
        return (f"NewtonStep(curvature={self.curvature!r}, damping={self.damping!r}, "
                f"estimate={self.estimate!r}, solver={self.solver!r}, "
                f"derivatives={self.derivatives!r})")


class NewtonState:
    """Everything one :class:`NewtonStep` keeps from call to call.

    Made by :meth:`NewtonStep.new_state`; a part the spec does not need is
    ``None`` (a fixed ``λ`` and an estimate computed every step keep nothing).

    Attributes:
      hessian_cache: the
        :class:`~keras_newton.newton._curvature_cache.CurvatureCache` of a
        Hessian estimate refreshed every ``k > 1`` steps
        (``HessianEstimate.refresh_every``), else ``None``.
      damping_state: the
        :class:`~keras_newton.newton.adaptive_damping.DampingState` of an
        adaptive damping rule, else ``None``.
    """

    def __init__(self, hessian_cache=None, damping_state=None):
        self.hessian_cache = hessian_cache
        self.damping_state = damping_state

    def __repr__(self) -> str:
        return (f"NewtonState(hessian_cache={self.hessian_cache!r}, "
                f"damping_state={self.damping_state!r})")


class _Default:
    """A shortcut's default, told apart from the same value passed on purpose."""

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


DEFAULT_CURVATURE = _Default("hessian")
DEFAULT_DAMPING = _Default(1e-3)


def as_newton_step(step=None, curvature=DEFAULT_CURVATURE, damping=DEFAULT_DAMPING):
    """The spec of ``step`` or of the ``curvature`` / ``damping`` shortcuts.

    Args:
      step: a :class:`NewtonStep`, its config dict, a curvature name, or
        ``None``.
      curvature, damping: shortcuts for ``NewtonStep(curvature, damping)``;
        only without a ``NewtonStep`` (the spec says them once).

    Example:

    >>> as_newton_step(curvature="fisher", damping=0.1) == NewtonStep("fisher", 0.1)
    True
    """
    given = {name: value for name, value in (("curvature", curvature), ("damping", damping))
             if not isinstance(value, _Default)}
    if isinstance(step, dict):
        step = keras.saving.deserialize_keras_object(step) if "class_name" in step \
            else NewtonStep.from_config(step)
    if isinstance(step, NewtonStep):
        if given:
            raise ValueError(
                "Pass curvature and damping inside the NewtonStep, not next to it; "
                f"got step={step!r} and {given}.")
        return step
    if isinstance(step, str):
        if "curvature" in given:
            raise ValueError(f"curvature given twice: {step!r} and {curvature!r}.")
        step, curvature = None, step
    if step is not None:
        raise TypeError(f"step must be a NewtonStep, a config or a curvature name, got {step!r}.")
    return NewtonStep(curvature.value if isinstance(curvature, _Default) else curvature,
                      damping.value if isinstance(damping, _Default) else damping)
