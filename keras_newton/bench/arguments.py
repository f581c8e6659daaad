"""The argument parser of ``keras-newton-bench`` (see :mod:`keras_newton.bench.cli`).

One function per flag group, so that every subcommand that trains a task
gets the same flags, and the flag names the task configuration reads.

Example:
  >>> build_parser().parse_args(["grid", "--quick"]).task
  'sort'
"""

from __future__ import annotations

import argparse

from keras_newton.bench.task import NEWTON_CHOICES, parse_damping
from keras_newton.losses.sorting_loss import OBJECTIVES

TASK_FLAGS = {
    "sort": ("sorter", "n", "tau", "network", "relaxation", "steepness", "art_lambda",
             "eval_sets", "scorer", "objective"),
    "path": ("method", "distance", "loop", "beta", "n_iter", "smoothing", "samples", "sigma",
             "noise", "epochs", "train_maps", "eval_maps", "grid_size", "manual_dir", "unroll"),
    "classify": ("model", "optimizer"),
}
COMMON_FLAGS = ("steps", "eval_every", "batch_size", "learning_rate", "dataset", "data_dir")
HESSIAN_FLAGS = ("hessian_samples", "hessian_rank", "hessian_refresh_every",
                 "hessian_products")
DEFAULT_OVERHEAD_NEWTON = ("none", "hessian", "fisher")


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training (defaults: the paper's; --quick: CPU preset)")
    group.add_argument("--quick", action="store_true", help="small CPU preset")
    group.add_argument("--newton", nargs="+", choices=NEWTON_CHOICES, default=None,
                       help="training variants (none = the loss itself)")
    group.add_argument("--damping", type=parse_damping, default=None,
                       help="Tikhonov λ for every Newton variant, or 'adaptive' "
                            "(Levenberg-Marquardt; default: per variant)")
    group.add_argument("--hessian-samples", type=int, default=None,
                       help="Newton-Hessian: empirical Hessian from this many samples "
                            "of the batch (default: all)")
    group.add_argument("--hessian-rank", type=int, default=None,
                       help="Newton-Hessian: rank of a randomized sketch of the "
                            "empirical Hessian (default: exact)")
    group.add_argument("--hessian-refresh-every", type=int, default=None,
                       help="Newton-Hessian: recompute the Hessian every k steps "
                            "(default: 1, every step)")
    group.add_argument("--hessian-products", choices=("autodiff", "finite_differences"),
                       default=None,
                       help="Newton-Hessian sketch (--hessian-rank): Hessian-vector "
                            "products by autodiff (default) or by finite differences of "
                            "gradients (first derivatives only: works with --no-unroll "
                            "and --loop while under XLA)")
    group.add_argument("--seeds", type=int, nargs="+", default=None, help="weight seeds")
    group.add_argument("--steps", type=int, help="optimizer steps per run")
    group.add_argument("--eval-every", type=int, help="steps between evaluations")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--learning-rate", type=float)
    group.add_argument("--dataset", help="offline default or a TFDS source (see the task)")
    group.add_argument("--data-dir", help="TFDS data directory")
    group.add_argument("--output-dir", default=None, help="results folder")
    group.add_argument("--name", default="results", help="stem of the results files")
    group.add_argument("--no-xla", action="store_true", help="disable jit_compile")
    group.add_argument("--native-numerics", action="store_true",
                       help="let XLA, oneDNN and XNNPACK use every instruction set of this "
                            "CPU (faster on some, but the table then depends on the CPU; "
                            "default: capped at AVX2 for the same table on every x86-64 "
                            "machine)")
    group.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None,
                       help="Keras progress: 0 silent, 1 bar, 2 one line per evaluation "
                            "(default: a bar when standard output is a terminal, else one "
                            "line per evaluation)")


def _add_parallel(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parallel runs")
    group.add_argument("--workers", type=int, default=None,
                       help="processes sharing the runs (default: 1; the quick sorting "
                            "presets use 2, one per core)")
    group.add_argument("--shard", default=None, metavar="INDEX/COUNT",
                       help=argparse.SUPPRESS)  # Set by --workers for its worker processes.


def _add_sort(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sorting")
    group.add_argument("--sorter", choices=("neural_sort", "soft_sort", "diff_sort"))
    group.add_argument("--n", type=int, help="items per set")
    group.add_argument("--tau", type=float, help="NeuralSort/SoftSort temperature")
    group.add_argument("--network", choices=("odd_even", "bitonic"))
    group.add_argument("--relaxation", help="sorting-network relaxation (logistic, cauchy, …)")
    group.add_argument("--steepness", type=float, help="sorting-network steepness β")
    group.add_argument("--art-lambda", type=float, help="λ of logistic_phi")
    group.add_argument("--eval-sets", type=int, help="sets in validation and test")
    group.add_argument("--scorer", choices=("cnn", "mlp"),
                       help="per-image network: the paper's CNN (default) or a small MLP "
                            "(the CPU preset of the main job)")
    group.add_argument("--objective", choices=OBJECTIVES,
                       help="ranking loss: entry-wise binary cross-entropy of P (bce, "
                            "default) or the cross-entropy of each sorted position's "
                            "column (positional_ce, as NeuralSort / SoftSort were "
                            "introduced)")


def _add_path(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("shortest paths")
    group.add_argument("--method", choices=("relaxed", "smoothing", "perturbed"))
    group.add_argument("--distance", choices=("l1", "l2"), help="relaxed: L1 or squared L2")
    group.add_argument("--loop", choices=("for", "while"), help="relaxed: loop kind")
    group.add_argument("--beta", type=float, help="relaxed: inverse temperature")
    group.add_argument("--n-iter", type=int, help="relaxed: Bellman-Ford iterations")
    group.add_argument("--unroll", action=argparse.BooleanOptionalAction, default=None,
                       help="relaxed: unroll the loops (default); --no-unroll runs them as "
                            "tf.while_loops (XLA compiles in seconds; Newton-Hessian then "
                            "needs --hessian-products finite_differences)")
    group.add_argument("--smoothing", choices=("loss", "algorithm"))
    group.add_argument("--samples", type=int, help="Monte-Carlo samples (3, 10, 30)")
    group.add_argument("--sigma", type=float, help="noise scale")
    group.add_argument("--noise", choices=("normal", "logistic", "cauchy", "gumbel"))
    group.add_argument("--epochs", type=int, help="epochs (sets steps when --steps is absent)")
    group.add_argument("--train-maps", type=int)
    group.add_argument("--eval-maps", type=int)
    group.add_argument("--grid-size", type=int)
    group.add_argument("--manual-dir", help="extracted Warcraft archive (dataset warcraft)")


def _add_classify(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("classification")
    group.add_argument("--model", choices=("M1", "M2", "M3", "M4", "M5"))
    group.add_argument("--optimizer", choices=("sgd", "adam"))


ADDERS = {"sort": _add_sort, "path": _add_path, "classify": _add_classify}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-newton-bench",
        description="Benchmarks of Newton losses (Petersen et al., NeurIPS 2024).")
    commands = parser.add_subparsers(dest="command", required=True)
    for task, adder in ADDERS.items():
        sub = commands.add_parser(task, help=f"train the {task} task: variants × seeds")
        adder(sub)
        _add_common(sub)
    grid = commands.add_parser("grid", help="methods × variants × seeds of one task "
                                            "(grid --quick is the main job)")
    grid.add_argument("--task", choices=tuple(ADDERS), default="sort")
    grid.add_argument("--methods", nargs="+", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                      help="method configs, e.g. sorter=neural_sort "
                           "sorter=diff_sort,relaxation=cauchy")
    for adder in ADDERS.values():
        adder(grid)
    _add_common(grid)
    _add_parallel(grid)
    study = commands.add_parser("study", help="efficacy study of the sorting methods: "
                                              "λ sweep, gain vs steps, diagnostics")
    study.add_argument("--methods", nargs="+", default=None, metavar="KEY=VALUE[,KEY=VALUE]",
                       help="sorting methods (default: NeuralSort, SoftSort, logistic and "
                            "Cauchy odd-even networks)")
    study.add_argument("--parts", nargs="+", choices=("sweep", "length", "lr"),
                       default=["sweep", "length"],
                       help="parts to run, in order (lr: the learning-rate control, "
                            "asked for by name)")
    study.add_argument("--learning-rates", type=float, nargs="+", default=None,
                       help="learning rates of the lr part (default: 3e-4 1e-3 3e-3); "
                            "λ per variant from a method's own dampings="
                            "hessian:0.0001+fisher:0.01, else the finished sweep's best")
    study.add_argument("--dampings", type=parse_damping, nargs="+", default=None,
                       help="the λ grid (default: --damping-min … --damping-max); "
                            "'adaptive' adds the adaptive damping as a column")
    study.add_argument("--damping-min", type=float, default=1e-3)
    study.add_argument("--damping-max", type=float, default=1e3)
    study.add_argument("--per-decade", type=int, default=2, help="λ values per decade")
    study.add_argument("--budgets", type=int, nargs="+", default=None,
                       help="step budgets of the length part (the longest is trained)")
    study.add_argument("--length-seeds", type=int, nargs="+", default=None,
                       help="seeds of the length part (default: --seeds)")
    _add_sort(study)
    _add_common(study)
    _add_parallel(study)
    overhead = commands.add_parser("overhead", help="step-time ratios Newton/regular")
    overhead.add_argument("--tasks", nargs="+", choices=tuple(ADDERS), default=list(ADDERS))
    overhead.add_argument("--rounds", type=int, default=30, help="timed steps per variant")
    for adder in ADDERS.values():
        adder(overhead)
    _add_common(overhead)
    return parser


__all__ = ["ADDERS", "COMMON_FLAGS", "DEFAULT_OVERHEAD_NEWTON", "HESSIAN_FLAGS", "TASK_FLAGS",
           "build_parser"]
