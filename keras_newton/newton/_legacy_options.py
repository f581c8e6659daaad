"""The flat keyword options of earlier versions, mapped into a ``NewtonStep``.

Before the spec, ``newton_target``, ``NewtonLoss`` and ``NewtonLossModel``
each took the same options (``indefinite``, ``solver``, ``hessian_rank``, ...)
and wrote them into their configs. Configs saved that way still load: their
``from_config`` maps the options here. Errors name the options as they were
spelled (``hessian_rank``, not ``HessianEstimate.rank``).

The spec class is passed in rather than imported, so that this module sits
below :mod:`~keras_newton.newton.spec` in the import graph (no cycle).

Example:

>>> >>> step = step_from_options(NewtonStep, curvature="hessian", damping=0.1, hessian_rank=8)
>>> step.estimate.rank, step.damping.value()
(8, 0.1)
"""

import re

from keras_newton.newton.damping import validate_damping
from keras_newton.newton.hessian_estimate import HessianEstimate
from keras_newton.newton._protocol import provides_curvature
from keras_newton.newton.solvers import Solver

# Option -> default, in the order of the old signatures.
OPTIONS = {
    "curvature": "hessian", "damping": 1e-3, "indefinite": "abs", "use_closed_form": True,
    "solver": "auto", "cg_max_iterations": 50, "cg_tolerance": 1e-5,
    "hessian_samples": None, "hessian_rank": None, "hessian_seed": 0,
    "hessian_refresh_every": 1, "hessian_products": "autodiff",
}
_ESTIMATE_FIELD = re.compile(r"HessianEstimate\.(samples|rank|seed|refresh_every|products)")


def step_from_options(step_class, loss=None, **options):
    """A :class:`NewtonStep` from the old keyword options (defaults as they were).

    Args:
      step_class: :class:`~keras_newton.newton.spec.NewtonStep`.
      loss: the wrapped loss, if known: ``use_closed_form=False`` keeps a
        loss's own curvature protocol, as it did, and the spec is checked
        against the loss (:meth:`NewtonStep.check_loss`).
      **options: any of :data:`OPTIONS`.

    Returns:
      The ``step_class`` instance.

    Raises:
      TypeError: an unknown option.
      ValueError: a bad option value, named as the option was spelled.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"Unknown Newton option(s) {unknown}; known: {list(OPTIONS)}.")
    o = dict(OPTIONS, **options)
    derivatives = "auto"
    if not o["use_closed_form"]:
        derivatives = "protocol" if provides_curvature(loss) else "autodiff"
    try:
        step = step_class(
            curvature=o["curvature"], damping=(o["damping"] if o["damping"] == "adaptive"
                                                 else validate_damping(o["damping"])),
            estimate=HessianEstimate(
                samples=o["hessian_samples"], rank=o["hessian_rank"],
                products=o["hessian_products"], seed=o["hessian_seed"],
                refresh_every=o["hessian_refresh_every"]),
            solver=Solver(o["solver"], o["indefinite"], o["cg_max_iterations"],
                          o["cg_tolerance"]),
            derivatives=derivatives)
        if loss is not None:
            step.check_loss(loss)
        return step
    except ValueError as error:
        raise ValueError(_ESTIMATE_FIELD.sub(r"hessian_\1", str(error))) from error


def config_with_step(config: dict, step_class, loss=None) -> dict:
    """``config`` with old option keys replaced by a ``step`` (unchanged if none).

    Args:
      config: a saved config of ``NewtonLoss`` or ``NewtonLossModel``.
      step_class: :class:`~keras_newton.newton.spec.NewtonStep`.
      loss: the wrapped loss, if known (see :func:`step_from_options`).
    """
    old = {key: config[key] for key in OPTIONS if key in config}
    if not old:
        return dict(config)
    config = {key: value for key, value in config.items() if key not in OPTIONS}
    config["step"] = step_from_options(step_class, loss, **old)
    return config
