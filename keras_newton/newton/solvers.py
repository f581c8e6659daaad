"""``Solver``: how the damped system ``(M + λI) s_i = g_i`` is solved.

* ``"dense"``: eigendecomposition of ``m×m`` matrices with the ``indefinite``
  treatment of negative curvature (:mod:`keras_newton.newton._eigen_solve`);
  estimated Hessians use the same solve on their eigen-factorization;
* ``"woodbury"``: empirical Fisher with ``m`` above the batch size, an
  ``N×N`` system in the span of the gradients
  (:mod:`keras_newton.newton._woodbury`), for every ``λ >= 0``;
* ``"cg"``: element-wise Hessian by conjugate gradients with Hessian-vector
  products (:mod:`keras_newton.newton._conjugate_gradient`). CG cannot apply
  ``indefinite``: it stops at the first search direction ``p`` with
  ``pᵀ(H_i + λI)p ≤ 0`` and returns the iterate so far (``g_i / max(λ, 1)``
  at the first iteration), so for indefinite ``H_i`` its step differs from
  the dense ``"abs"`` step; ``indefinite="clip"`` with CG is an error;
* ``"auto"``: Woodbury / CG when ``m > 256`` where they apply (Woodbury:
  ``m`` above a static batch size; CG: a loss autodiff can
  differentiate twice and ``indefinite="abs"``), else dense.

Example:

>>> Solver("auto").choose("fisher", damping_positive=True, m=1024, batch_size=32,
...                       protocol=False)
'woodbury'
"""

import keras
import tensorflow as tf

from keras_newton.newton import _eigen_solve as eigen_solve
from keras_newton.newton._configurable import Configurable
from keras_newton.newton._conjugate_gradient import conjugate_gradient_steps
from keras_newton.newton.curvatures import ELEMENTWISE_HESSIAN, FISHER
from keras_newton.newton._estimators import (
    DenseCurvature,
    EigenCurvature,
    FisherFactor,
    HessianProducts,
)
from keras_newton.newton._woodbury import woodbury_fisher_steps

SOLVERS = ("auto", "dense", "woodbury", "cg")
LARGE_OUTPUT_SIZE = 256


@keras.saving.register_keras_serializable(package="keras_newton")
class Solver(Configurable):
    """Which solver, and its settings (see the module docstring).

    Args:
      method: ``"auto"``, ``"dense"``, ``"woodbury"`` or ``"cg"``.
      indefinite: ``"abs"`` (saddle-free ``|e|``) or ``"clip"``
        (``max(e, 0)``): negative eigenvalues in the dense and estimated
        Hessian solves.
      cg_max_iterations, cg_tolerance: CG iteration cap and relative residual.
    """

    def __init__(self, method: str = "auto", indefinite: str = "abs",
                 cg_max_iterations: int = 50, cg_tolerance: float = 1e-5):
        if method not in SOLVERS:
            raise ValueError(f"Unknown solver={method!r}; expected one of {SOLVERS}.")
        self.method = method
        self.indefinite = eigen_solve.validate_indefinite(indefinite)
        if method == "cg" and indefinite != "abs":
            raise ValueError(
                f"solver='cg' cannot apply indefinite={indefinite!r}: it stops at "
                "negative curvature instead (see keras_newton.newton._conjugate_gradient). "
                "Use solver='dense', or the default indefinite='abs'.")
        self.cg_max_iterations = int(cg_max_iterations)
        self.cg_tolerance = float(cg_tolerance)

    def check(self, curvature: str, damping_positive: bool) -> None:
        """Raises if this solver cannot solve ``curvature``.

        ``damping_positive`` (whether ``λ > 0`` on every step) is accepted for
        callers' sake; every solver now takes ``λ = 0``.
        """
        if self.method == "woodbury" and curvature != FISHER:
            raise ValueError(
                f"solver='woodbury' applies to curvature='fisher'; got curvature={curvature!r}.")
        if self.method == "cg" and curvature != ELEMENTWISE_HESSIAN:
            raise ValueError(
                "solver='cg' applies to curvature='elementwise_hessian' of a loss "
                f"autodiff can differentiate twice; got curvature={curvature!r}.")

    def check_loss(self, loss, protocol: bool) -> None:
        """Raises for CG with a loss that supplies its own curvature (``protocol``)."""
        if self.method == "cg" and protocol:
            raise ValueError(
                "solver='cg' needs Hessian-vector products by autodiff, but "
                f"{type(loss).__name__} supplies its own curvature.")

    def choose(self, curvature, damping_positive, m, batch_size, protocol) -> str:
        """The solver for ``m`` outputs per sample and a static batch size (or None).

        ``damping_positive`` no longer changes the choice: Woodbury takes ``λ = 0``.
        """
        if self.method != "auto":
            return self.method
        if curvature == FISHER and m > LARGE_OUTPUT_SIZE:
            return "woodbury" if batch_size is None or m > batch_size else "dense"
        if (curvature == ELEMENTWISE_HESSIAN and m > LARGE_OUTPUT_SIZE and not protocol
                and self.indefinite == "abs"):
            return "cg"
        return "dense"

    def get_config(self) -> dict:
        return {"method": self.method, "indefinite": self.indefinite,
                "cg_max_iterations": self.cg_max_iterations,
                "cg_tolerance": self.cg_tolerance}


def as_solver(solver) -> Solver:
    """A :class:`Solver` from a solver, a method name or a config dict."""
    if isinstance(solver, Solver):
        return solver
    if isinstance(solver, dict):
        return Solver.from_config(solver.get("config", solver))
    return Solver(solver)


def damped_newton_steps(curvature, gradients, damping, solver: Solver) -> tf.Tensor:
    """Rows ``(M + λI)^{-1} g_i`` for a curvature estimate of any form.

    Where a batch curvature is not finite the step falls back to the gradient
    ``g_i`` (Theorem 2 of the paper: ordinary training).

    Args:
      curvature: a curvature from :func:`keras_newton.newton._estimators.estimate_curvature`.
      gradients: ``[N, m]`` per-sample gradients.
      damping: ``λ >= 0`` of this step.
      solver: the :class:`Solver` (its ``indefinite`` and CG settings).
    """
    if isinstance(curvature, FisherFactor):
        return woodbury_fisher_steps(curvature.gradients, damping) / curvature.scale
    if isinstance(curvature, HessianProducts):
        return conjugate_gradient_steps(curvature.product, gradients, damping,
                                        solver.cg_max_iterations, solver.cg_tolerance)
    if isinstance(curvature, EigenCurvature):
        factorization = (curvature.eigenvalues, curvature.eigenvectors)
        steps = eigen_solve.low_rank_damped_solve(
            factorization, gradients, damping, solver.indefinite)
    elif curvature.matrix.shape.rank == 3:  # one matrix per sample
        steps = eigen_solve.damped_solve(
            curvature.matrix, gradients[:, None, :], damping, solver.indefinite)[:, 0]
    else:
        steps = eigen_solve.damped_solve(curvature.matrix, gradients, damping, solver.indefinite)
    return tf.where(curvature.ok, steps, gradients)


__all__ = ["LARGE_OUTPUT_SIZE", "SOLVERS", "Solver", "as_solver", "damped_newton_steps"]
