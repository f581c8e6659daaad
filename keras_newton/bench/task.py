"""What a benchmark task is, and how a variant turns it into a compiled model.

A *task* bundles everything one experiment of the paper needs: a model
factory, the (algorithmic) loss, a training stream that can start at any step
(so a resumed run sees exactly the batches it would have seen), fixed
validation and test sets, per-sample metrics and the optimizer recipe. A
*variant* says how the loss is trained: directly (``newton="none"``) or as a
Newton loss with a curvature and a Tikhonov damping λ (Petersen et al., 2024,
eq. 3):

.. math::

    z^\\star = y - (M + \\lambda I)^{-1} g, \\qquad
    \\ell^\\star = \\tfrac12 \\lVert z^\\star - y \\rVert^2 .

Baseline and Newton variants share the architecture and, for equal seeds,
the initial weights: the Newton model is a :class:`keras_newton.NewtonLossModel`
over the same layers.

A Newton variant's step is a :class:`keras_newton.NewtonStep` built from the
variant's curvature, damping and :class:`~keras_newton.newton.HessianEstimate`
(:meth:`Variant.newton_step`). The CLI's and the result records'
``hessian_*`` options are the estimate's fields under their flag names
(:func:`hessian_estimate`, :meth:`Variant.hessian_options`).

Example:
  >>> variant = Variant("neural_sort/hessian", newton="hessian", damping=0.1)
  >>> variant.is_newton
  True
  >>> variant.newton_step().damping.value()
  0.1
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from keras_newton.newton import CURVATURES, HessianEstimate, NewtonStep
from keras_newton.newton.damping import validate_damping

NEWTON_CHOICES = ("none", *CURVATURES)
ADAPTIVE = "adaptive"  # the damping value of AdaptiveDamping

# CLI flag / record key -> HessianEstimate field.
HESSIAN_FLAG_FIELDS = {"hessian_samples": "samples", "hessian_rank": "rank",
                       "hessian_refresh_every": "refresh_every",
                       "hessian_products": "products"}
_ESTIMATE_FIELD = re.compile(r"HessianEstimate\.(samples|rank|refresh_every|products)")


def parse_damping(value) -> float | str:
    """A damping of the CLI or of a record: a finite float ``>= 0`` or ``"adaptive"``.

    Numbers are checked by the library's
    :func:`keras_newton.newton.damping.validate_damping`.

    >>> parse_damping("1e-3"), parse_damping("adaptive")
    (0.001, 'adaptive')
    """
    if value == ADAPTIVE:
        return ADAPTIVE
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(
                f"damping must be a number >= 0 or {ADAPTIVE!r}, got {value!r}") from None
    try:
        return validate_damping(value)
    except TypeError:
        raise ValueError(f"damping must be a number >= 0 or {ADAPTIVE!r}, got {value!r}") from None


@contextlib.contextmanager
def named_as_flags():
    """Re-raises the spec's ValueErrors with the ``hessian_*`` names of the CLI.

    ``HessianEstimate.rank`` in a message of the library becomes
    ``hessian_rank``, the name the user typed (as ``--hessian-rank``).
    """
    try:
        yield
    except ValueError as error:
        raise ValueError(_ESTIMATE_FIELD.sub(r"hessian_\1", str(error))) from error


def hessian_estimate(**hessian_options) -> HessianEstimate:
    """The :class:`~keras_newton.newton.HessianEstimate` of ``hessian_*`` options.

    Args:
      **hessian_options: any of :data:`HESSIAN_FLAG_FIELDS` (the CLI flags and
        the keys of result records).

    Returns:
      The estimate, validated by the library (errors name the options).

    Raises:
      TypeError: an unknown option.
      ValueError: a bad value.

    Example:
      >>> hessian_estimate(hessian_rank=2).rank
      2
    """
    unknown = sorted(set(hessian_options) - set(HESSIAN_FLAG_FIELDS))
    if unknown:
        raise TypeError(f"Unknown Hessian option(s) {unknown}; known: {list(HESSIAN_FLAG_FIELDS)}.")
    with named_as_flags():
        return HessianEstimate(**{HESSIAN_FLAG_FIELDS[key]: value
                                  for key, value in hessian_options.items()})


def format_damping(damping) -> str:
    """``"0.001"`` or ``"adaptive"``: a damping in labels, tables and folder names."""
    return damping if damping == ADAPTIVE else f"{float(damping):g}"


@dataclasses.dataclass
class Task:
    """One benchmark problem (see the module docstring).

    Attributes:
      name: ``"sort"``, ``"path"`` or ``"classify"``.
      build_model: returns a fresh functional ``keras.Model`` (weights drawn
        from Keras' global seed, set by the caller).
      loss: the loss trained directly or wrapped as a Newton loss.
      train_stream: ``start_step -> tf.data.Dataset`` of ``(x, y)`` batches,
        infinite, whose first batch is batch ``start_step`` of the run.
      eval_sets: ``{"validation": (x, y), "test": (x, y)}`` NumPy arrays.
      metrics: ``name -> fn(y_true, y_pred) -> [N]`` per-sample values.
      selection: metric used for model selection on the validation set.
      make_optimizer: ``total_steps -> keras optimizer`` (learning-rate
        schedules are defined in steps).
      config: the task's full configuration (goes into the results JSON).
      eval_batch_size: batch size used for evaluation.
    """

    name: str
    build_model: Callable[[], keras.Model]
    loss: keras.losses.Loss
    train_stream: Callable[[int], tf.data.Dataset]
    eval_sets: dict[str, tuple[np.ndarray, np.ndarray]]
    metrics: dict[str, Callable[[Any, Any], tf.Tensor]]
    selection: str
    make_optimizer: Callable[[int], keras.optimizers.Optimizer]
    config: dict
    eval_batch_size: int = 256


@dataclasses.dataclass(frozen=True)
class Variant:
    """How a task's loss is trained.

    Attributes:
      name: label in tables and plots.
      newton: ``"none"`` (the loss itself) or a curvature of
        :data:`keras_newton.CURVATURES` (``"hessian"``, ``"fisher"``,
        ``"elementwise_hessian"``).
      damping: Tikhonov λ of the Newton step (ignored for ``"none"``), or
        ``"adaptive"`` (:class:`keras_newton.newton.AdaptiveDamping`).
      options: task options this variant overrides (e.g. the sorter).
      estimate: how the empirical Hessian is estimated (exact by default;
        subsampled, sketched or refreshed every k steps only for
        ``newton="hessian"``). See README, "Affordable Hessians".

    :meth:`from_flags` builds a variant from the ``hessian_*`` options of
    the CLI and of result records; :meth:`newton_step` is its spec.
    """

    name: str
    newton: str = "none"
    damping: float | str = 1.0
    options: tuple = ()
    estimate: HessianEstimate = dataclasses.field(default_factory=HessianEstimate)

    def __post_init__(self):
        if self.newton not in NEWTON_CHOICES:
            raise ValueError(
                f"newton must be one of {NEWTON_CHOICES}, got {self.newton!r}")
        object.__setattr__(self, "damping", parse_damping(self.damping))  # frozen
        if self.is_newton:
            self.newton_step()  # validates the combination
        elif self.estimate != HessianEstimate():
            raise ValueError(f"{self.hessian_options()} apply to newton='hessian', "
                             "not to the loss trained directly (newton='none').")

    @classmethod
    def from_flags(cls, name: str, newton: str = "none", damping: float | str = 1.0,
                     options: tuple = (), **hessian_options) -> "Variant":
        """A variant from the ``hessian_*`` options of the CLI or of a record.

        Example:
          >>> Variant.from_flags("h", "hessian", 0.1, hessian_rank=2).estimate.rank
          2
        """
        return cls(name, newton, damping, options, hessian_estimate(**hessian_options))

    @property
    def is_newton(self) -> bool:
        return self.newton != "none"

    def hessian_options(self) -> dict:
        """The estimate as ``hessian_*`` options (the keys of result records)."""
        return {flag: getattr(self.estimate, field)
                for flag, field in HESSIAN_FLAG_FIELDS.items()}

    def newton_step(self) -> NewtonStep:
        """The :class:`keras_newton.NewtonStep` this Newton variant trains with."""
        with named_as_flags():
            return NewtonStep(curvature=self.newton, damping=self.damping,
                              estimate=self.estimate)

    def as_dict(self) -> dict:
        return {"name": self.name, "newton": self.newton, "damping": self.damping,
                **self.hessian_options(), **dict(self.options)}


def hessian_options_for(newton: str, hessian_options: dict | None) -> dict:
    """The affordable-Hessian options that apply to variant ``newton``.

    They concern only the empirical Hessian (``newton="hessian"``); the other
    variants of a grid or an overhead measurement get the defaults.

    Example:
      >>> hessian_options_for("fisher", {"hessian_rank": 2})
      {}
    """
    return dict(hessian_options or {}) if newton == "hessian" else {}


# Training steps per call of the compiled step function in ``fit``: fewer
# Python round trips, the same steps (weights agree bit for bit with one step
# per call), so runs made with any value resume with any other.
MAX_STEPS_PER_EXECUTION = 50


def steps_per_execution(eval_every: int, limit: int = MAX_STEPS_PER_EXECUTION) -> int:
    """Largest divisor of ``eval_every`` not above ``limit``.

    ``fit`` runs this many training steps per call of the compiled step, so
    on small models (the CPU presets) the per-step Python overhead is paid
    once per call; a divisor keeps evaluations exactly every ``eval_every``
    steps.

    Example:
      >>> steps_per_execution(500), steps_per_execution(4), steps_per_execution(97)
      (50, 4, 1)
    """
    eval_every, limit = int(eval_every), int(limit)
    if eval_every < 1 or limit < 1:
        raise ValueError(f"eval_every and limit must be >= 1, got {eval_every}, {limit}")
    return max(k for k in range(1, min(eval_every, limit) + 1) if eval_every % k == 0)


def build_variant_model(task: Task, variant: Variant, seed: int,
                        jit_compile: bool | str = True,
                        steps_per_execution: int = 1) -> keras.Model:
    """A compiled model for ``variant``: same layers and initial weights per seed.

    Args:
      task: the task.
      variant: the training variant.
      seed: seeds Keras' global generator before the weights are drawn.
      jit_compile: passed to ``compile`` (XLA on by default).
      steps_per_execution: training steps per call of the compiled step in
        ``fit`` (see :func:`steps_per_execution`); ``train_on_batch`` (the
        overhead benchmark) runs one step whatever the value.
    """
    from keras_newton.newton import NewtonLossModel

    keras.utils.set_random_seed(int(seed))
    base = task.build_model()
    if variant.is_newton:
        model = NewtonLossModel(base.inputs, base.outputs, step=variant.newton_step(),
                                name=f"{base.name}_newton")
    else:
        model = base
    model.compile(optimizer=task.make_optimizer(task.config["steps"]), loss=task.loss,
                  jit_compile=jit_compile, steps_per_execution=int(steps_per_execution))
    return model
