"""The public surface: which modules and names are API, and the warning aliases.

Modules without a leading underscore are API; each package's ``__init__`` is
the one list of its public names; names and module paths that moved keep
working for one release with a DeprecationWarning.
"""

import importlib
import os
import sys

import pytest

import keras_newton as kn
from keras_newton import _deprecation

PACKAGE = os.path.dirname(os.path.abspath(kn.__file__))

NEWTON_PUBLIC_MODULES = {
    "adaptive_damping", "curvatures", "damping", "hessian_estimate", "newton_loss",
    "newton_loss_model", "solvers", "spec", "target"}


def _public_modules(package):
    folder = os.path.join(PACKAGE, package)
    return {name[:-3] for name in os.listdir(folder)
            if name.endswith(".py") and not name.startswith("_")}


def test_newton_has_at_most_twelve_public_modules_all_listed_in_its_init():
    public = _public_modules("newton")
    assert public == NEWTON_PUBLIC_MODULES
    assert len(public) <= 12
    for module in public:  # the docstring of newton/__init__.py lists each one
        assert f"``{module}``" in kn.newton.__doc__, module


@pytest.mark.parametrize("package", ["newton", "sorting", "shortest_path", "smoothing",
                                     "losses", "metrics", "distribute"])
def test_all_exports_no_helper_and_every_export_exists(package):
    module = importlib.import_module(f"keras_newton.{package}")
    exported = getattr(module, "__all__", None) or [
        name for name in vars(module) if not name.startswith("_")
        and not isinstance(getattr(module, name), type(os))]
    for name in exported:
        assert not name.startswith("_"), name
        assert hasattr(module, name), name
    for helper in ("resolve_loss", "per_sample_loss_fn", "shape_errors_named", "validate_seed",
                   "validate_t_conorm", "check_relaxation"):
        assert helper not in exported, (package, helper)


@pytest.mark.parametrize("name, module", [
    ("resolve_loss", "keras_newton.newton._derivatives"),
    ("per_sample_loss_fn", "keras_newton.newton._autodiff"),
    ("shape_errors_named", "keras_newton.newton._protocol"),
])
def test_helpers_exported_before_warn_and_resolve(name, module):
    with pytest.warns(DeprecationWarning, match=f"keras_newton.newton.{name} is deprecated"):
        value = getattr(kn.newton, name)
    assert value is getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("old, new", sorted(_deprecation.MOVED_MODULES.items()))
def test_old_module_paths_import_with_a_warning(old, new):
    sys.modules.pop(old, None)  # so that the import below runs the finder
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*use {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_an_old_module_path_works_in_a_from_import():
    sys.modules.pop("keras_newton.newton.options", None)
    with pytest.warns(DeprecationWarning):
        from keras_newton.newton.options import step_from_options  # noqa: PLC0415
    assert step_from_options is importlib.import_module(
        "keras_newton.newton._legacy_options").step_from_options


def test_distribute_exports_fit_and_keeps_its_modules_private():
    assert _public_modules("distribute") == set()
    assert kn.distribute.__all__ == ["fit"]
    assert kn.distribute.fit is importlib.import_module("keras_newton.distribute._fit").fit
    assert "distribute" in kn.__all__
    for module in ("_fit", "_checkpoint", "_checks"):  # the docstring names each one
        assert f"``{module}``" in kn.distribute.__doc__, module


def test_unknown_names_and_modules_still_fail():
    with pytest.raises(AttributeError, match="no_such_name"):
        kn.newton.no_such_name  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("keras_newton.newton.no_such_module")


def test_the_smoothing_oracle_is_no_longer_named_like_the_newton_solver():
    assert kn.smoothing.Oracle is not kn.newton.Solver
    assert "Solver" not in kn.smoothing.__all__
    with pytest.warns(DeprecationWarning, match="keras_newton.smoothing.Solver is deprecated"):
        assert kn.smoothing.Solver is kn.smoothing.Oracle
    sys.modules.pop("keras_newton.smoothing.solvers", None)
    with pytest.warns(DeprecationWarning):
        from keras_newton.smoothing.solvers import Solver  # noqa: PLC0415
    assert Solver is kn.smoothing.Oracle
    assert kn.smoothing.get_solver("argmax") == kn.smoothing.Oracle(
        "argmax", kn.smoothing.one_hot_argmax, "max")
