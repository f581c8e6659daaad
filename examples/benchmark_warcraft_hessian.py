"""Affordable vs exact Hessian Newton losses for the relaxed Bellman-Ford.

Two measurements (Petersen et al., NeurIPS 2024, skipped Hessians for the
12×12 Warcraft shortest path because of their cost):

* **overhead**: on the Warcraft model (ResNet18 stem + stage 1,
  :func:`keras_newton.models.warcraft_resnet`) with the relaxed Bellman-Ford
  L1 loss, random 96×96×3 maps, the time of a Newton-Hessian training step
  over a regular one, steps of all variants interleaved, under XLA; and the
  compile time of each variant's first step (first call minus its median).
  With ``HessianEstimate(refresh_every=k)`` steps differ (every ``k``-th refreshes),
  so the ratio of *mean* step times over whole multiples of ``k`` is
  reported next to the median. Variants: ``regular``, ``exact`` (full
  ``m×m`` Hessian by nested tapes), ``affordable`` (subsample + rank-r
  sketch + cached refresh, autodiff products) with the unrolled relaxed
  path, and ``regular_while`` / ``affordable_while_fd`` with its loops as
  ``tf.while_loop`` s and finite-difference products (first derivatives
  only, so XLA compiles them in seconds); each ratio is to the regular
  variant with the same loops.
* **accuracy**: regular, exact-Hessian and affordable-Hessian training on
  the offline synthetic terrain maps (:mod:`keras_newton.datasets.terrain`)
  over seeds; test perfect-match rate and cost ratio (exact shortest path of
  the predicted costs vs the true path) as mean ± std.

    python examples/benchmark_warcraft_hessian.py overhead --batch-size 70
    python examples/benchmark_warcraft_hessian.py accuracy --seeds 3

Both are plain functions (:func:`step_overhead`, :func:`terrain_accuracy`) so
a benchmark CLI can call them.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

import keras_newton as kn
from keras_newton.datasets.terrain import make_terrain_arrays
from keras_newton.models.warcraft_resnet import warcraft_resnet
from keras_newton.shortest_path import relaxed_shortest_path, shortest_path

AFFORDABLE = dict(samples=4, rank=8, refresh_every=10)

# name -> fields of the variant's kn.newton.HessianEstimate (None: the regular
# loss; {}: the exact Hessian). Two extra keys: "unroll"
# (False: the relaxed path's loops run as tf.while_loops, default True) and
# "regular" (True: train on the loss itself).
DEFAULT_VARIANTS = {
    "regular": None,
    "exact": dict(),
    "affordable": AFFORDABLE,
    "regular_while": dict(regular=True, unroll=False),
    "affordable_while_fd": dict(AFFORDABLE, unroll=False, products="finite_differences"),
}


def split_variant(options):
    """``(unroll, HessianEstimate fields or None)`` of a variant's options."""
    if options is None:
        return True, None
    options = dict(options)
    unroll = bool(options.pop("unroll", True))
    return unroll, (None if options.pop("regular", False) else options)


def relaxed_path_loss(beta: float = 10.0, n_iter=None, unroll: bool = True):
    """Per-sample L1 distance between the relaxed path of costs and the true path."""

    def loss(y_true, y_pred):
        path = relaxed_shortest_path(y_pred, beta=beta, n_iter=n_iter, unroll=unroll)
        return tf.reduce_mean(tf.abs(path - tf.cast(y_true, path.dtype)), axis=[1, 2])

    return loss


def cell_mlp(input_shape, grid_size: int) -> keras.Model:
    """A small per-cell network: tile-mean colours -> 1×1 MLP -> positive cost.

    Learns the terrain costs within a few epochs, so that exact and affordable
    Hessians can be compared over seeds on a CPU budget.
    """
    maps = keras.Input(input_shape)
    x = keras.layers.AveragePooling2D(input_shape[0] // grid_size)(maps)
    x = keras.layers.Dense(32, activation="relu")(x)
    x = keras.layers.Dense(1, activation="softplus")(x)
    return keras.Model(maps, keras.layers.Reshape((grid_size, grid_size))(x))


MODELS = {"warcraft_resnet": warcraft_resnet, "cell_mlp": cell_mlp}


def _compiled_model(seed, input_shape, grid_size, options, beta, n_iter, damping, jit_compile,
                    learning_rate=1e-3, model="warcraft_resnet", run_eagerly=False):
    keras.utils.set_random_seed(seed)
    model = MODELS[model](input_shape, grid_size)
    unroll, options = split_variant(options)
    loss = relaxed_path_loss(beta, n_iter, unroll)
    if options is not None:
        step = kn.NewtonStep("hessian", damping, estimate=kn.newton.HessianEstimate(**options))
        loss = kn.NewtonLoss(loss, step)
    model.compile(keras.optimizers.Adam(learning_rate), loss=loss, jit_compile=jit_compile,
                  run_eagerly=run_eagerly)
    return model


def step_overhead(variants=None, batch_size=70, image_size=96, grid_size=12, n_iter=None,
                  beta=10.0, damping=1e-3, steps=10, jit_compile=True, seed=0, log=print,
                  run_eagerly=False):
    """Median / mean training-step time of each variant over the regular one.

    Returns:
      ``{name: {"compile_s", "median_s", "mean_s", "median_ratio",
      "mean_ratio", "baseline"}}``; ratios are relative to the regular
      variant with the same loop kind (``"regular"`` if there is none).
    """
    variants = dict(DEFAULT_VARIANTS if variants is None else variants)
    variants.setdefault("regular", None)
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(batch_size, image_size, image_size, 3)).astype("float32")
    costs = rng.uniform(0.5, 9.0, size=(batch_size, grid_size, grid_size)).astype("float32")
    y = shortest_path(tf.constant(costs)).numpy()
    models, first = {}, {}
    for name, options in variants.items():
        models[name] = _compiled_model(seed, x.shape[1:], grid_size, options, beta, n_iter,
                                       damping, jit_compile, run_eagerly=run_eagerly)
        start = time.perf_counter()
        value = models[name].train_on_batch(x, y)
        first[name] = time.perf_counter() - start
        log(f"{name}: first step {first[name]:.1f} s (loss {float(np.ravel(value)[0]):.4f})")
    times = {name: [] for name in variants}
    for _ in range(steps):  # interleaved: load changes hit all variants alike
        for name, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times[name].append(time.perf_counter() - start)
    results = {}
    for name in variants:
        median, mean = float(np.median(times[name])), float(np.mean(times[name]))
        results[name] = dict(compile_s=first[name] - median, median_s=median, mean_s=mean)
    regular = {split_variant(o)[0]: name for name, o in variants.items()
               if split_variant(o)[1] is None}
    for name, options in variants.items():
        baseline = regular.get(split_variant(options)[0], "regular")
        results[name]["baseline"] = baseline
        for kind in ("median", "mean"):
            results[name][f"{kind}_ratio"] = (results[name][f"{kind}_s"]
                                              / results[baseline][f"{kind}_s"])
    return results


def _path_metrics(costs_pred, true_path, true_costs):
    predicted = shortest_path(tf.constant(costs_pred)).numpy()
    match = np.all(predicted == (true_path > 0.5), axis=(1, 2))
    optimal = np.sum(true_costs * true_path, axis=(1, 2))
    return float(np.mean(match)), float(np.mean(np.sum(true_costs * predicted, axis=(1, 2)) / optimal))


def terrain_accuracy(variants=None, seeds=(0, 1, 2), num_train=256, num_test=128,
                     grid_size=6, tile_size=8, epochs=40, batch_size=32, n_iter=None,
                     beta=10.0, damping=1.0, learning_rate=3e-2, jit_compile=False,
                     model="cell_mlp", log=print, run_eagerly=False):
    """Trains every variant on synthetic terrain for each seed; test path metrics.

    ``model`` is ``"cell_mlp"`` (default; learns within minutes on a CPU) or
    ``"warcraft_resnet"``.

    Returns:
      ``{name: {"perfect_match": (mean, std), "cost_ratio": (mean, std),
      "runs": [(seed, perfect_match, cost_ratio), ...]}}``.
    """
    variants = dict(DEFAULT_VARIANTS if variants is None else variants)
    train = make_terrain_arrays(num_train, seed=1000, grid_size=grid_size, tile_size=tile_size)
    test = make_terrain_arrays(num_test, seed=2000, grid_size=grid_size, tile_size=tile_size)
    x_train, x_test = (d["map"].astype("float32") / 255.0 for d in (train, test))
    y_train = train["path"].astype("float32")
    side = grid_size * tile_size
    results = {name: {"runs": []} for name in variants}
    for seed in seeds:
        for name, options in variants.items():
            net = _compiled_model(seed, (side, side, 3), grid_size, options, beta, n_iter,
                                  damping, jit_compile, learning_rate, model, run_eagerly)
            start = time.perf_counter()
            net.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
                      shuffle=True)
            match, ratio = _path_metrics(
                net.predict(x_test, batch_size=128, verbose=0), test["path"], test["weights"]
            )
            results[name]["runs"].append((seed, match, ratio))
            log(f"seed {seed} {name}: perfect match {match:.3f}, cost ratio {ratio:.4f} "
                f"({time.perf_counter() - start:.0f} s)")
    for name, entry in results.items():
        runs = np.array([run[1:] for run in entry["runs"]])
        spread = runs.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(2)
        entry["perfect_match"] = (float(runs[:, 0].mean()), float(spread[0]))
        entry["cost_ratio"] = (float(runs[:, 1].mean()), float(spread[1]))
    return results


def format_overhead(results) -> str:
    lines = ["| variant | median step s | step / regular (median) | (mean) | compile s | regular |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['median_s']:.2f} | {r['median_ratio']:.2f} | "
                     f"{r['mean_ratio']:.2f} | {r['compile_s']:.0f} | {r['baseline']} |")
    return "\n".join(lines)


def format_accuracy(results) -> str:
    lines = ["| variant | perfect match | cost ratio | seeds |", "|---|---|---|---|"]
    for name, r in results.items():
        (pm, pm_sd), (cr, cr_sd) = r["perfect_match"], r["cost_ratio"]
        lines.append(f"| {name} | {pm:.3f} ± {pm_sd:.3f} | {cr:.4f} ± {cr_sd:.4f} | "
                     f"{len(r['runs'])} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("overhead", "accuracy"))
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--n-iter", type=int, default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--grid-size", type=int, default=None)
    parser.add_argument("--num-train", type=int, default=256)
    parser.add_argument("--tile-size", type=int, default=8)
    # Accuracy defaults: with fewer epochs or a smaller rate nothing learns the
    # costs' scale (every variant keeps predicting the diagonal path, 55% of
    # the test maps); λ = 1e-3 gives Newton steps too large to train.
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--damping", type=float, default=1.0)
    parser.add_argument("--model", choices=tuple(MODELS), default="cell_mlp")
    parser.add_argument("--skip-exact", action="store_true")
    parser.add_argument("--no-xla", action="store_true")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--refresh", type=int, default=10)
    parser.add_argument("--variants", nargs="+", choices=tuple(DEFAULT_VARIANTS),
                        default=None, help="subset of the variants (default: all)")
    args = parser.parse_args(argv)
    variants = dict(DEFAULT_VARIANTS)
    affordable = dict(samples=args.samples, rank=args.rank, refresh_every=args.refresh)
    variants["affordable"] = affordable
    variants["affordable_while_fd"] = dict(affordable, unroll=False,
                                           products="finite_differences")
    if args.variants:
        variants = {name: variants[name] for name in args.variants}
    if args.skip_exact:
        variants.pop("exact", None)
    if args.what == "overhead":
        results = step_overhead(variants, batch_size=args.batch_size or 70,
                                grid_size=args.grid_size or 12, n_iter=args.n_iter,
                                steps=args.steps, damping=args.damping,
                                jit_compile=not args.no_xla)
        print(format_overhead(results))
    else:
        results = terrain_accuracy(variants, seeds=tuple(range(args.seeds)),
                                   num_train=args.num_train, epochs=args.epochs,
                                   grid_size=args.grid_size or 6, tile_size=args.tile_size,
                                   learning_rate=args.lr, model=args.model,
                                   damping=args.damping,
                                   batch_size=args.batch_size or 32, n_iter=args.n_iter)
        print(format_accuracy(results))


if __name__ == "__main__":
    main()
