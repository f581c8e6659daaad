"""A registry of oracles by name, so losses can serialize the solver they use.

An oracle (a combinatorial solver; a losses' ``solver=`` argument) maps inputs ``[..., *shape]`` to solutions of the same shape (e.g.
cost maps to 0/1 path masks) and optimizes a linear objective over a finite
feasible set, either minimizing (``sense="min"``: shortest paths) or
maximizing (``sense="max"``: one-hot argmax) ``⟨θ, w⟩``. Losses store the
name (``"shortest_path"``), never the function object.

Example:

>>> from keras_newton.smoothing.oracles import get_solver
>>> get_solver("argmax").sense
'max'

:class:`Oracle` was called ``Solver`` in earlier versions, the name of the
Newton step's linear solve (:class:`keras_newton.newton.Solver`); the old
name is a warning alias for one release.
"""

from typing import Callable, Dict, NamedTuple, Union

import tensorflow as tf

from keras_newton._deprecation import moved_names
from keras_newton.shortest_path import shortest_path

SENSES = ("min", "max")


class Oracle(NamedTuple):
    """A registered oracle: its name, function and optimization sense."""

    name: str
    fn: Callable[[tf.Tensor], tf.Tensor]
    sense: str


_REGISTRY: Dict[str, Oracle] = {}


def register_solver(name: str, fn: Callable[[tf.Tensor], tf.Tensor], sense: str) -> Oracle:
    """Registers ``fn`` under ``name`` (overwriting an existing entry).

    Args:
      name: the name stored in configs.
      fn: batched solver ``[..., *shape] -> [..., *shape]``; must compile
        under XLA for the losses to.
      sense: ``"min"`` or ``"max"``, the direction of ``⟨θ, w⟩`` it optimizes.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}.")
    if sense not in SENSES:
        raise ValueError(f"Unknown sense={sense!r}; expected one of {SENSES}.")
    _REGISTRY[name] = Oracle(name, fn, sense)
    return _REGISTRY[name]


def get_solver(solver: Union[str, Callable, Oracle]) -> Oracle:
    """Looks up a solver by name or by its registered function.

    Raises:
      ValueError: for an unknown name or an unregistered function (register
        it with :func:`register_solver` so it can be serialized).
    """
    if isinstance(solver, Oracle):
        return solver
    if isinstance(solver, str):
        if solver not in _REGISTRY:
            raise ValueError(
                f"Unknown solver={solver!r}; registered: {sorted(_REGISTRY)}."
            )
        return _REGISTRY[solver]
    for entry in _REGISTRY.values():
        if entry.fn is solver:
            return entry
    raise ValueError(
        f"solver={solver!r} is not registered; call "
        "keras_newton.smoothing.register_solver(name, fn, sense) first so that "
        "the loss can be serialized by name."
    )


def one_hot_argmax(scores: tf.Tensor) -> tf.Tensor:
    """One-hot of the largest entry along the last axis (first index on ties)."""
    scores = tf.convert_to_tensor(scores)
    best = tf.reduce_max(scores, axis=-1, keepdims=True)
    size = scores.shape[-1]
    index = tf.reduce_min(
        tf.where(scores == best, tf.range(size), tf.fill(tf.shape(scores), size)), -1
    )
    return tf.one_hot(index, size, dtype=scores.dtype)


__getattr__ = moved_names(__name__, {"Solver": (__name__, "Oracle")})

register_solver("shortest_path", shortest_path, "min")
register_solver("argmax", one_hot_argmax, "max")
