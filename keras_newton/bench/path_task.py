"""Shortest-path supervision on 12×12 terrain maps (the paper's Warcraft benchmark).

A ResNet maps a 96×96 terrain image to a 12×12 cost map ``θ``; one of three
families of losses compares what an algorithm makes of ``θ`` with the true
shortest path ``p`` (8-neighbourhood, top-left to bottom-right):

* ``relaxed``: the relaxed (AlgoVision) Bellman-Ford path ``p̃(θ)`` with a
  For or While loop, and an L1 or squared-L2 distance to ``p``
  (:class:`keras_newton.losses.ShortestPathLoss`);
* ``smoothing``: stochastic smoothing of the exact solver, of the whole loss
  (Hessian and Fisher) or of the algorithm only (Fisher),
  ``E[ℓ(p, f(θ + σZ))]`` (:class:`keras_newton.losses.SmoothedLoss`);
* ``perturbed``: the perturbed optimizer with its Fenchel-Young loss
  (:class:`keras_newton.losses.FenchelYoungLoss`).

Metrics: perfect match of the exact path of ``θ`` (model selection) and the
cost ratio ``Σ w·p̂ / Σ w·p`` with the true costs ``w``.

Example:
  >>> task = path_task(dict(PATH_DEFAULTS, train_maps=20, eval_maps=4,
  ...                       steps=2, eval_every=1))        # doctest: +SKIP

References:
  Vlastelica et al., ICLR 2020 (Warcraft shortest paths); Petersen et al.,
  NeurIPS 2021 (AlgoVision); Berthet et al., NeurIPS 2020; Petersen et al.,
  NeurIPS 2024 (Newton losses).
"""

from __future__ import annotations

import functools
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_newton.bench.task import Task
from keras_newton.datasets import terrain
from keras_newton.losses import FenchelYoungLoss, ShortestPathLoss, SmoothedLoss
from keras_newton.metrics.path_metrics import cost_ratio, perfect_match
from keras_newton.models import warcraft_resnet

METHODS = ("relaxed", "smoothing", "perturbed")
SECOND_ORDER_NEWTON = ("hessian", "elementwise_hessian")
DATASETS = ("terrain", "synthetic_terrain", "warcraft")

# Paper defaults (Warcraft): batch 70, Adam 5e-4, 50 epochs, learning rate
# ×0.1 after epochs 30 and 40; 10 000 training maps, evaluation every epoch.
PATH_DEFAULTS = {
    "method": "relaxed",
    "distance": "l1",          # relaxed: "l1" or "l2" (squared)
    "loop": "for",             # relaxed: "for" or "while"
    "beta": 10.0,              # relaxed: inverse temperature
    "n_iter": None,            # relaxed: Bellman-Ford iterations (None: H+W)
    "unroll": True,            # relaxed: False runs its loops as tf.while_loops
    "smoothing": "loss",       # smoothing: "loss" or "algorithm"
    "samples": 10,             # smoothing / perturbed: 3, 10 or 30
    "sigma": 1.0,              # smoothing / perturbed: noise scale
    "noise": "normal",
    "learning_rate": 5e-4,
    "batch_size": 70,
    "epochs": 50,
    "decay_epochs": (30, 40),
    "train_maps": 10_000,
    "eval_maps": 1000,
    "grid_size": 12,
    "tile_size": 8,
    "dataset": "terrain",      # offline generator; TFDS: synthetic_terrain, warcraft
    "data_dir": None,
    "manual_dir": None,
}


@functools.lru_cache(maxsize=4)
def _terrain_split(split: str, num_maps: int, grid: int, tile: int, seed: int):
    offsets = {"train": 0, "validation": 1, "test": 2}
    data = terrain.make_terrain_arrays(num_maps, [seed, offsets[split]],
                                       grid_size=grid, tile_size=tile)
    return (data["map"].astype(np.float32) / 255.0,
            data["path"].astype(np.float32), data["weights"].astype(np.float32))


def _tfds_split(config: dict, split: str, limit: int):
    from keras_newton.datasets import shortest_path_data

    builder = shortest_path_data.prepare_shortest_path_builder(
        config["dataset"], data_dir=config["data_dir"], manual_dir=config["manual_dir"])
    dataset = shortest_path_data.shortest_path_dataset(
        builder, split, batch_size=256, targets="all", shuffle=False).unbatch().take(limit)
    batches = list(dataset.batch(1024).as_numpy_iterator())
    return tuple(np.concatenate([b[key] for b in batches]) for key in ("map", "path", "weights"))


def load_split(config: dict, split: str, limit: int):
    """``(maps [N, H, W, 3], paths [N, g, g], weights [N, g, g])`` float32."""
    if config["dataset"] not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {config['dataset']!r}")
    if config["dataset"] == "terrain":
        return _terrain_split(split, int(limit), int(config["grid_size"]),
                              int(config["tile_size"]), int(config.get("data_seed", 0)))
    return _tfds_split(config, split, int(limit))


def path_loss(config: dict) -> keras.losses.Loss:
    """The loss of ``config["method"]`` (see the module docstring)."""
    method = config["method"]
    if method == "relaxed":
        return ShortestPathLoss(loss=config["distance"], beta=float(config["beta"]),
                                n_iter=config["n_iter"], loop=config["loop"],
                                unroll=bool(config["unroll"]))
    common = dict(num_samples=int(config["samples"]), sigma=float(config["sigma"]),
                  noise=config["noise"], seed=int(config.get("loss_seed", 0)))
    if method == "smoothing":
        return SmoothedLoss("hamming", algorithm="shortest_path",
                            smoothing=config["smoothing"], **common)
    if method == "perturbed":
        return FenchelYoungLoss("shortest_path", **common)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def check_xla_support(config: dict, newton: Sequence[str], jit_compile: bool,
                      hessian_options: dict | None = None) -> None:
    """Raises ValueError for a Hessian of a ``tf.while_loop`` relaxation under XLA.

    The Newton-Hessian variants differentiate the loss twice; second
    derivatives of a ``tf.while_loop`` (the While loop, or any loop with
    ``unroll=False``) need ``TensorListReserve`` with a dynamic size, which
    XLA does not compile. Unrolled loops, the Fisher variant and a Hessian
    sketch from finite-difference products (first derivatives only) are fine.

    Args:
      config: path-task configuration (keys as in ``PATH_DEFAULTS``).
      newton: training variants (``"none"``, ``"hessian"``, ...).
      jit_compile: whether the training step is XLA-compiled.
      hessian_options: the Newton-Hessian variant's affordable-Hessian options.
    """
    config = dict(PATH_DEFAULTS, **config)
    while_loops = config["loop"] == "while" or not config["unroll"]
    if not jit_compile or config["method"] != "relaxed" or not while_loops:
        return
    first_order_hessian = (hessian_options or {}).get("hessian_products") == "finite_differences"
    second_order = [v for v in newton if v in SECOND_ORDER_NEWTON
                    and not (v == "hessian" and first_order_hessian)]
    if second_order:
        loops = "--loop while" if config["loop"] == "while" else "--no-unroll"
        raise ValueError(
            f"{loops} with --newton {' '.join(second_order)} cannot run under XLA "
            "(second derivatives of a tf.while_loop do not compile: TensorListReserve); "
            "pass --no-xla, use --loop for with unrolled loops, or (Newton-Hessian) "
            "--hessian-rank R --hessian-products finite_differences")


def check_hessian_options(config: dict, hessian_options: dict) -> None:
    """Raises ValueError for affordable-Hessian options the path loss cannot use.

    The smoothing and perturbed losses supply their own Monte-Carlo Hessian
    estimates, so a sketch from autodiff Hessian-vector products
    (``hessian_rank``) does not apply to them; subsampling does.
    """
    from keras_newton.bench.task import hessian_estimate, named_as_flags
    from keras_newton.newton import NewtonStep

    step = NewtonStep("hessian", estimate=hessian_estimate(**hessian_options))
    with named_as_flags():
        step.check_loss(path_loss(dict(PATH_DEFAULTS, **config)))


def path_task(config: dict) -> Task:
    """Builds the shortest-path task of ``config`` (keys as in ``PATH_DEFAULTS``)."""
    config = dict(PATH_DEFAULTS, **config)
    train_maps, train_paths, _ = load_split(config, "train", config["train_maps"])
    eval_sets = {}
    for split in ("validation", "test"):
        maps, paths, weights = load_split(config, split, config["eval_maps"])
        eval_sets[split] = (maps, {"path": paths, "weights": weights})
    batch_size = int(config["batch_size"])
    # An epoch is as many whole batches as the maps fill (the stream drops
    # incomplete batches); steps, evaluations and learning-rate decay count it.
    steps_per_epoch = max(1, len(train_maps) // batch_size)
    config.setdefault("steps", int(config["epochs"]) * steps_per_epoch)
    config.setdefault("eval_every", steps_per_epoch)
    seed = int(config.get("data_seed", 0))

    def train_stream(start_step: int):
        dataset = tf.data.Dataset.from_tensor_slices((train_maps, train_paths))
        dataset = dataset.shuffle(len(train_maps), seed=seed, reshuffle_each_iteration=True)
        return dataset.repeat().batch(batch_size, drop_remainder=True).skip(int(start_step))

    def make_optimizer(total_steps: int):
        rate = float(config["learning_rate"])
        boundaries = [int(e) * steps_per_epoch for e in config["decay_epochs"]]
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [rate * 0.1 ** i for i in range(len(boundaries) + 1)])
        return keras.optimizers.Adam(schedule)

    solve_metrics = tf.function(lambda y, costs: (perfect_match(y["path"], costs),
                                                  cost_ratio(y["weights"], costs)))

    def metric(index):
        return lambda y, costs: solve_metrics(y, tf.constant(costs))[index]

    grid = int(config["grid_size"])
    return Task(
        name="path",
        build_model=lambda: warcraft_resnet(train_maps.shape[1:], grid),
        loss=path_loss(config),
        train_stream=train_stream,
        eval_sets=eval_sets,
        metrics={"perfect_match": metric(0), "cost_ratio": metric(1)},
        selection="perfect_match",
        make_optimizer=make_optimizer,
        config=config,
        eval_batch_size=64,
    )


def describe(config: dict) -> str:
    """Short label of a path method, e.g. ``"relaxed(for, l1)"``."""
    if config["method"] == "relaxed":
        return f"relaxed({config['loop']}, {config['distance']})"
    if config["method"] == "smoothing":
        return f"smoothing({config['smoothing']}, {config['samples']} samples)"
    return f"perturbed+FY({config['samples']} samples)"
