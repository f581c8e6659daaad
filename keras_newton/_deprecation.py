"""Warning aliases for names and module paths that moved (kept for one release).

Two kinds of alias live here, so that what a user must change is said in one
place (see ``CHANGELOG.md``):

- **Moved modules.** ``import keras_newton.newton.autodiff`` still works after
  the module became ``keras_newton.newton._autodiff``: :class:`_MovedModules`,
  a finder at the end of ``sys.meta_path``, answers the old path with the
  module under its new path and warns. No stub file is left behind, so the
  public modules of a package are exactly its files without an underscore.
- **Moved names.** :func:`moved_names` builds a package's module-level
  ``__getattr__`` (PEP 562) that resolves an old public name and warns.

Saved ``.keras`` files and configs are unaffected either way: Keras finds
classes by their registered name (``"keras_newton>NewtonLoss"``), not by the
module path written next to it.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# Old module path -> new module path.
MOVED_MODULES = {
    **{f"keras_newton.newton.{name}": f"keras_newton.newton._{name}" for name in (
        "autodiff", "closed_forms", "configurable", "conjugate_gradient",
        "curvature_cache", "curvature_scale", "derivatives", "distribution",
        "eigen_solve", "estimators", "finite_inputs", "output_space", "protocol",
        "sketch", "usable_samples", "woodbury")},
    "keras_newton.newton.options": "keras_newton.newton._legacy_options",
    "keras_newton.newton.reduction": "keras_newton.newton._loss_decrease",
    "keras_newton.shortest_path.grid": "keras_newton.shortest_path._grid",
    "keras_newton.shortest_path.t_conorms": "keras_newton.shortest_path._t_conorms",
    "keras_newton.smoothing.seeding": "keras_newton.smoothing._seeding",
    "keras_newton.smoothing.solvers": "keras_newton.smoothing.oracles",
}


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
    """Emits the one DeprecationWarning wording of every alias here."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; "
                  f"use {new}.", DeprecationWarning, stacklevel=stacklevel)


class _MovedModuleLoader(importlib.abc.Loader):
    """Loads an old module path as the module at its new path."""

    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warn_moved(spec.name, self.new, stacklevel=2)
        # The import system keeps the attributes the real module already has
        # (its __spec__, __file__) and files it under the old name too.
        return importlib.import_module(self.new)

    def exec_module(self, module) -> None:
        """Nothing to run: the module at the new path is already loaded."""


class _MovedModules(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED_MODULES` (and nothing else)."""

    def find_spec(self, fullname, path=None, target=None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new))


def install_module_aliases() -> None:
    """Puts the finder of moved modules at the end of ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())


def moved_names(package: str, moved: dict):
    """A PEP 562 ``__getattr__`` for ``package`` resolving names that moved.

    Args:
      package: the package's ``__name__`` (for the error of unknown names).
      moved: old public name -> ``(module, name)`` it is now found at.

    Returns:
      The ``__getattr__`` function; it warns with a DeprecationWarning and
      returns the object, or raises AttributeError for names not in ``moved``.
    """

    def __getattr__(name):
        if f"{package}.{name}" in MOVED_MODULES:  # an old submodule attribute
            return importlib.import_module(f"{package}.{name}")
        if name not in moved:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, new_name = moved[name]
        warn_moved(f"{package}.{name}", f"{module}.{new_name}")
        return getattr(importlib.import_module(module), new_name)

    return __getattr__
