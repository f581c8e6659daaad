"""Value semantics for the parts of a Newton spec, from their ``get_config``.

A part of a :class:`~keras_newton.newton.spec.NewtonStep` is what its config
says: two parts with equal configs are equal (and hash alike), a part is
rebuilt by ``cls(**config)``, and it prints as its constructor call.

Example:

>>> class Rate(Configurable):
...     def __init__(self, value=1.0):
...         self.value = value
...     def get_config(self):
...         return {"value": self.value}
>>> Rate(2.0) == Rate.from_config({"value": 2.0}), Rate(2.0)
(True, Rate(value=2.0))
"""

import abc
import json


class Configurable(abc.ABC):
    """Base: ``from_config``, ``==``, ``hash`` and ``repr`` from ``get_config()``."""

    @abc.abstractmethod
    def get_config(self) -> dict:
        """The constructor's keyword arguments that rebuild this part."""

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, json.dumps(self.get_config(), sort_keys=True)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({fields})"
