"""Ranking supervision on multi-digit number sets (the paper's sorting benchmark).

A CNN (or, in the CPU preset, an MLP: ``scorer="mlp"``) scores each of the
``n`` four-digit number images of a set; the scores
go through a differentiable sorter (NeuralSort, SoftSort or a differentiable
sorting network), and the relaxed permutation matrix ``P`` is compared with
the true one ``Q`` by binary cross-entropy (:class:`keras_newton.losses.SortingLoss`,
``objective="bce"``, the default):

.. math::

    \\ell = -\\frac1{n^2} \\sum_{ij} Q_{ij}\\log P_{ij} + (1-Q_{ij})\\log(1-P_{ij}),

or, with ``objective="positional_ce"`` (``--objective positional_ce``, or
``objective=positional_ce`` in a ``--methods`` entry), by the cross-entropy of
each sorted position's distribution over the items, as NeuralSort and
SoftSort were introduced:

.. math::

    \\ell = -\\frac1n \\sum_{ij} Q_{ij}\\log P_{ij}.

The objective shows in the method's label (and so in its run folders) only
when it is not the default, so runs made before the option existed resume.

Metrics (Petersen et al., 2021): exact match of the whole ordering (the
paper's headline number, also used for model selection on the validation
set) and the element-wise rank accuracy.

Example:
  >>> task = sort_task(dict(SORT_DEFAULTS, steps=10, eval_sets=20))
  >>> task.eval_sets["test"][0].shape
  (20, 5, 8, 32, 1)

References:
  Grover et al., ICLR 2019 (NeuralSort); Prillo & Eisenschlos, ICML 2020
  (SoftSort); Petersen et al., ICML 2021 / ICLR 2022 (sorting networks);
  Petersen et al., NeurIPS 2024 (Newton losses).
"""

from __future__ import annotations

import functools

import keras

from keras_newton.bench.task import Task
from keras_newton.datasets import multi_digit as multi_digit_lib
from keras_newton.datasets import sources
from keras_newton.losses import SortingLoss
from keras_newton.metrics.ranking_metrics import elementwise_rank_accuracy
from keras_newton.metrics.ranking_metrics import ordering_exact_match
from keras_newton.models import four_digit_cnn, four_digit_mlp

SORTERS = ("neural_sort", "soft_sort", "diff_sort")

# Full-run defaults: the paper's batches of 100 sets, 100 000 steps and
# evaluation every 1000 steps (Petersen et al. 2024, sorting benchmark). The
# paper does not publish its optimizer settings; Adam 1e-3 is this library's
# choice (diffsort's reference setup uses Adam 10^-3.5).
SORT_DEFAULTS = {
    "sorter": "neural_sort",
    "n": 5,
    "tau": 1.0,            # NeuralSort / SoftSort temperature.
    "network": "odd_even",
    "relaxation": "cauchy",
    "steepness": 10.0,     # Sorting-network inverse temperature β.
    "art_lambda": 0.25,
    "learning_rate": 1e-3,
    "batch_size": 100,
    "steps": 100_000,
    "eval_every": 1000,
    "eval_sets": 1000,     # sets in the validation and in the test set
    "dataset": "digits",   # offline default; "mnist" loads TFDS
    "data_dir": None,
    "scorer": "cnn",       # the paper's CNN; "mlp" is the CPU preset's (main job)
    "objective": "bce",    # SortingLoss objective: "bce" or "positional_ce"
}
SCORERS = ("cnn", "mlp")


@functools.lru_cache(maxsize=8)
def _digits(source: str, split: str, data_dir: str | None):
    return sources.load_image_source(source, split, data_dir)


# Runs up to this many items (steps × batch × n) draw their indices once.
MAX_CACHED_ITEMS = 5_000_000


@functools.lru_cache(maxsize=2)
def _train_indices(source: str, data_dir: str | None, n: int, batch_size: int, seed: int,
                   steps: int):
    images, _ = _digits(source, "train", data_dir)
    return multi_digit_lib.draw_index_batches(len(images), steps, set_size=n,
                                              batch_size=batch_size, seed=seed)


def sorting_loss(config: dict) -> SortingLoss:
    """The :class:`SortingLoss` of ``config`` (the sorter's own options and the objective)."""
    sorter = config["sorter"]
    if sorter not in SORTERS:
        raise ValueError(f"sorter must be one of {SORTERS}, got {sorter!r}")
    if sorter == "diff_sort":
        options = {k: config[k] for k in ("network", "relaxation", "steepness", "art_lambda")}
    else:
        options = {"tau": config["tau"]}
    return SortingLoss(sorter, objective=config.get("objective", "bce"), **options)


def sort_task(config: dict) -> Task:
    """Builds the ranking task of ``config`` (keys as in ``SORT_DEFAULTS``)."""
    config = dict(SORT_DEFAULTS, **config)
    n, source, data_dir = int(config["n"]), config["dataset"], config["data_dir"]
    seed = int(config.get("data_seed", 0))
    arrays = {split: _digits(source, split, data_dir)
              for split in ("train", "validation", "test")}
    eval_sets = {
        split: multi_digit_lib.multi_digit_arrays(
            split, num_sets=int(config["eval_sets"]), set_size=n, seed=seed + 1,
            digit_arrays=arrays[split])
        for split in ("validation", "test")
    }
    image_shape = tuple(eval_sets["test"][0].shape[2:])
    if config["scorer"] not in SCORERS:
        raise ValueError(f"scorer must be one of {SCORERS}, got {config['scorer']!r}")
    scorer = four_digit_mlp if config["scorer"] == "mlp" else four_digit_cnn
    batch_size = int(config["batch_size"])

    steps = int(config["steps"])

    def train_stream(start_step: int):
        # Sets are a pure function of their index, so skipping whole batches
        # puts a resumed run exactly where the interrupted one stopped.
        dataset = multi_digit_lib.multi_digit_dataset(
            "train", set_size=n, batch_size=batch_size, seed=seed,
            digit_arrays=arrays["train"])
        if steps * batch_size * n > MAX_CACHED_ITEMS or start_step >= steps:
            return dataset.skip(int(start_step))
        # Short runs (the CPU presets) draw the run's digit indices once per
        # process and only compose images per step: the same sets, ~2× fewer
        # CPU cycles per step. Batches past the budget come from the stream.
        cached = _train_indices(source, data_dir, n, batch_size, seed, steps)
        return multi_digit_lib.compose_index_batches(
            arrays["train"], cached[int(start_step):]).concatenate(dataset.skip(steps))

    def make_optimizer(total_steps: int):
        return keras.optimizers.Adam(float(config["learning_rate"]))

    return Task(
        name="sort",
        build_model=lambda: scorer(image_shape, n),
        loss=sorting_loss(config),
        train_stream=train_stream,
        eval_sets=eval_sets,
        metrics={"exact_match": ordering_exact_match,
                 "rank_accuracy": elementwise_rank_accuracy},
        selection="exact_match",
        make_optimizer=make_optimizer,
        config=config,
    )


def describe(config: dict) -> str:
    """Short label of a sorter configuration, e.g. ``"diff_sort(cauchy, β=10)"``.

    A non-default objective is appended (``"soft_sort(τ=1, positional_ce)"``);
    the default adds nothing, so existing labels and run folders stay valid.
    """
    if config["sorter"] == "diff_sort":
        details = [str(config["relaxation"]), f"β={config['steepness']:g}"]
    else:
        details = [f"τ={config['tau']:g}"]
    objective = config.get("objective", SORT_DEFAULTS["objective"])
    if objective != SORT_DEFAULTS["objective"]:
        details.append(objective)
    return f"{config['sorter']}({', '.join(details)})"


__all__ = ["SCORERS", "SORTERS", "SORT_DEFAULTS", "describe", "sort_task", "sorting_loss"]
