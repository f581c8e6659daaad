"""The package's import graph has no cycle, counting imports inside functions.

Every module of ``keras_newton`` is parsed with :mod:`ast`; each ``import``
or ``from ... import`` of a module of the package (at module level or in a
function body) is an edge. ``from package import name`` is an edge to the
submodule ``package.name`` where that file exists, else to the package's
``__init__``. The implicit import of a parent package when a submodule is
imported is not an edge (it is not a dependency between the two files).
"""

import ast
import os

import keras_newton as kn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(kn.__file__)))
PACKAGE = "keras_newton"


def _modules():
    """Module name -> (path, is_package) of every file of the package."""
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_package)
    return found


def _absolute(node, module, is_package):
    """The absolute module a ``from`` import names (relative ones resolved)."""
    if not node.level:
        return node.module
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules=None):
    """Module -> set of package modules it imports (module level and in functions)."""
    modules = modules or _modules()
    graph = {}
    for module, (path, is_package) in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, module, is_package)
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                           else source for alias in node.names]
            else:
                continue
            edges |= {target for target in targets if target in modules and target != module}
        graph[module] = edges
    return graph


def find_cycle(graph):
    """One cycle of ``graph`` as a list of modules, or ``None``."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_graph_sees_function_level_and_from_imports():
    graph = import_graph()
    # spec reaches the legacy options only inside a (deprecated) classmethod.
    assert "keras_newton.newton._legacy_options" in graph["keras_newton.newton.spec"]
    # "from keras_newton.newton import _eigen_solve as eigen_solve" names the submodule.
    assert "keras_newton.newton._eigen_solve" in graph["keras_newton.newton.solvers"]
    # A name of the package's __init__ is an edge to the __init__.
    assert "keras_newton.newton" in graph["keras_newton"]


def test_find_cycle_finds_a_cycle_through_a_function_level_import(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (package / "c.py").write_text("from . import a\n")
    modules = {"pkg": (str(package / "__init__.py"), True)}
    for name in "abc":
        modules[f"pkg.{name}"] = (str(package / f"{name}.py"), False)
    graph = import_graph(modules)
    assert graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
