"""Which solver computes the damped Newton step ``(M + λI)^{-1} g``.

* ``"dense"``: eigendecomposition of ``m x m`` matrices
  (:mod:`keras_newton.damped_solve`);
* ``"woodbury"``: empirical Fisher with ``m`` above the batch size, an
  ``N x N`` system (:mod:`keras_newton.woodbury`);
* ``"cg"``: element-wise Hessian by conjugate gradients with Hessian-vector
  products (:mod:`keras_newton.conjugate_gradient`);
* ``"auto"``: Woodbury / CG when ``m > 256`` where they apply, else dense.

Example:

>>> from keras_newton.solver_choice import choose_solver
>>> choose_solver("auto", "fisher", 0.1, m=1024, batch_size=32, loss=None)
'woodbury'
"""

from keras_newton import curvature as curvature_lib

SOLVERS = ("auto", "dense", "woodbury", "cg")
LARGE_OUTPUT_SIZE = 256


def choose_solver(solver, curvature, damping, m, batch_size, loss, indefinite="abs") -> str:
    """Validates ``solver`` and resolves ``"auto"`` by shape (see newton_target).

    CG cannot apply ``indefinite`` (see :mod:`keras_newton.conjugate_gradient`):
    ``"auto"`` keeps the dense solve when ``indefinite`` is not the default
    ``"abs"``, and ``solver="cg"`` with such an ``indefinite`` is an error.
    """
    if solver not in SOLVERS:
        raise ValueError(f"Unknown solver={solver!r}; expected one of {SOLVERS}.")
    if solver == "auto":
        if curvature == curvature_lib.FISHER and damping > 0 and m > LARGE_OUTPUT_SIZE:
            return "woodbury" if batch_size is None or m > batch_size else "dense"
        if (curvature == curvature_lib.ELEMENTWISE_HESSIAN and m > LARGE_OUTPUT_SIZE
                and not curvature_lib.provides_curvature(loss) and indefinite == "abs"):
            return "cg"
        return "dense"
    if solver == "woodbury" and (curvature != curvature_lib.FISHER or damping <= 0):
        raise ValueError(
            "solver='woodbury' applies to curvature='fisher' with damping > 0; "
            f"got curvature={curvature!r}, damping={damping}."
        )
    if solver == "cg" and (
        curvature != curvature_lib.ELEMENTWISE_HESSIAN or curvature_lib.provides_curvature(loss)
    ):
        raise ValueError(
            "solver='cg' applies to curvature='elementwise_hessian' of a loss "
            f"autodiff can differentiate twice; got curvature={curvature!r}."
        )
    if solver == "cg" and indefinite != "abs":
        raise ValueError(
            f"solver='cg' cannot apply indefinite={indefinite!r}: it stops at "
            "negative curvature instead (see keras_newton.conjugate_gradient). "
            "Use solver='dense', or the default indefinite='abs'."
        )
    return solver
