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

A Newton variant's step is a :class:`keras_newton.NewtonStep` built from its
fields (:meth:`Variant.newton_step`); nothing else copies them.

Example:
  >>> variant = Variant("neural_sort/hessian", newton="hessian", damping=0.1)
  >>> variant.is_newton
  True
  >>> variant.newton_step().damping.value()
  0.1
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from keras_newton.newton import NewtonStep

NEWTON_CHOICES = ("none", "hessian", "fisher", "elementwise_hessian")
ADAPTIVE = "adaptive"  # the damping value of AdaptiveDamping


def parse_damping(value) -> float | str:
    """A damping of the CLI or of a record: a finite float ``>= 0`` or ``"adaptive"``.

    >>> parse_damping("1e-3"), parse_damping("adaptive")
    (0.001, 'adaptive')
    """
    if value == ADAPTIVE:
        return ADAPTIVE
    try:
        damping = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"damping must be a number >= 0 or {ADAPTIVE!r}, got {value!r}") from None
    if not np.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be finite and >= 0, got {value!r}")
    return damping


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
      newton: ``"none"`` (the loss itself), ``"hessian"``, ``"fisher"`` or
        ``"elementwise_hessian"``.
      damping: Tikhonov λ of the Newton step (ignored for ``"none"``), or
        ``"adaptive"`` (:class:`keras_newton.newton.AdaptiveDamping`).
      options: task options this variant overrides (e.g. the sorter).
      hessian_samples: empirical Hessian from this many samples of the batch
        (``None``: all); ``newton="hessian"`` only.
      hessian_rank: rank of a randomized sketch of the empirical Hessian
        (``None``: exact); ``newton="hessian"`` only.
      hessian_refresh_every: recompute the empirical Hessian every this many
        steps (1: every step); ``newton="hessian"`` only. See README,
        "Affordable Hessians", and :class:`keras_newton.NewtonLossModel`.
      hessian_products: ``"autodiff"`` or ``"finite_differences"``
        Hessian-vector products of the sketch (``hessian_rank``).

    The ``hessian_*`` fields are the options of the CLI and of result
    records; :meth:`newton_step` turns them into the spec.
    """

    name: str
    newton: str = "none"
    damping: float | str = 1.0
    options: tuple = ()
    hessian_samples: int | None = None
    hessian_rank: int | None = None
    hessian_refresh_every: int = 1
    hessian_products: str = "autodiff"

    def __post_init__(self):
        if self.newton not in NEWTON_CHOICES:
            raise ValueError(
                f"newton must be one of {NEWTON_CHOICES}, got {self.newton!r}")
        object.__setattr__(self, "damping", parse_damping(self.damping))  # frozen
        if self.is_newton:
            self.newton_step()  # validates the options
        elif any(getattr(self, f.name) != f.default for f in dataclasses.fields(self)
                 if f.name.startswith("hessian_")):
            raise ValueError(f"{self.hessian_options()} apply to newton='hessian', "
                             "not to the loss trained directly (newton='none').")

    @property
    def is_newton(self) -> bool:
        return self.newton != "none"

    def hessian_options(self) -> dict:
        """The affordable-Hessian options, keyed as ``NewtonLossModel``'s arguments."""
        return {"hessian_samples": self.hessian_samples, "hessian_rank": self.hessian_rank,
                "hessian_refresh_every": self.hessian_refresh_every,
                "hessian_products": self.hessian_products}

    def newton_step(self) -> NewtonStep:
        """The :class:`keras_newton.NewtonStep` this Newton variant trains with."""
        return NewtonStep.from_options(curvature=self.newton, damping=self.damping,
                                       **self.hessian_options())

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
