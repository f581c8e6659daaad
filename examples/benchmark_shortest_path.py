"""Shortest-path timings, measured side by side in one run (medians).

On a batch of cost maps (default: 70 maps of 12×12, the Warcraft setting):

* the relaxed Bellman-Ford path (``ShortestPathLoss``, L1) forward+backward,
* the exact solver (``shortest_path``),
* one stochastic-smoothing estimate of the Hamming loss of the exact path
  (``SmoothedLoss``: gradient only, and gradient + Hessian) and one
  Fenchel-Young estimate (gradient + Hessian) with 3 / 10 / 30 samples,
* a training step of the Warcraft ResNet (random inputs) with the relaxed
  ``ShortestPathLoss``: regular vs ``NewtonLoss(..., curvature="fisher")``,
  and the ratio of their medians (goal ≤ 1.05).

Every function is XLA-compiled and warmed up first; the variants are then
called in interleaved rounds (the order rotates every round) and the median
per variant is reported, so load on the machine affects all of them alike.

Usage::

    python examples/benchmark_shortest_path.py               # full size
    python examples/benchmark_shortest_path.py --batch 4 --grid 4 --image 16 \\
        --rounds 2 --samples 2                               # smoke test
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_newton as kn  # noqa: E402
from keras_newton.losses import FenchelYoungLoss, ShortestPathLoss, SmoothedLoss  # noqa: E402
from keras_newton.models.warcraft_resnet import warcraft_resnet  # noqa: E402
from keras_newton.shortest_path import shortest_path  # noqa: E402


def _sync(value):
    for tensor in tf.nest.flatten(value):
        if hasattr(tensor, "numpy"):
            tensor.numpy()


def interleaved_medians(variants, rounds):
    """Median seconds per call of each ``name -> fn`` over interleaved rounds."""
    for fn in variants.values():  # compile and warm up
        _sync(fn())
        _sync(fn())
    names = list(variants)
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            _sync(variants[name]())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def algorithm_variants(costs, truth, samples):
    """Compiled calls of the relaxed path, the exact solver and the estimators."""
    variants = {}
    for label, unroll in (("", True), (" (while loops)", False)):
        relaxed = ShortestPathLoss("l1", unroll=unroll)

        @tf.function(jit_compile=True)
        def relaxed_forward_backward(c, relaxed=relaxed):
            with tf.GradientTape() as tape:
                tape.watch(c)
                value = relaxed(truth, c)
            return tape.gradient(value, c)

        variants["relaxed path fwd+bwd" + label] = lambda f=relaxed_forward_backward: f(costs)
    exact = tf.function(shortest_path, jit_compile=True)
    variants["exact solver"] = lambda: exact(costs)
    for s in samples:
        smoothed = SmoothedLoss("hamming", "shortest_path", num_samples=s, sigma=0.5, seed=0)
        fenchel_young = FenchelYoungLoss("shortest_path", num_samples=s, sigma=0.5, seed=0)
        gradient = tf.function(
            lambda c, loss=smoothed: loss.per_sample_derivatives(truth, c, hessian=False)[0],
            jit_compile=True)
        both = tf.function(
            lambda c, loss=smoothed: loss.per_sample_derivatives(truth, c, hessian=True),
            jit_compile=True)
        fy = tf.function(
            lambda c, loss=fenchel_young: loss.per_sample_derivatives(truth, c, hessian=True),
            jit_compile=True)
        variants[f"smoothing gradient, {s} samples"] = lambda f=gradient: f(costs)
        variants[f"smoothing gradient+Hessian, {s} samples"] = lambda f=both: f(costs)
        variants[f"Fenchel-Young gradient+Hessian, {s} samples"] = lambda f=fy: f(costs)
    return variants


def training_variants(maps, truth, grid, unroll):
    """Compiled train steps of the Warcraft ResNet: regular vs Newton (Fisher)."""
    variants = {}
    relaxed = ShortestPathLoss("l1", unroll=unroll)
    losses = {
        "regular step": relaxed,
        "Newton step (Fisher)": kn.NewtonLoss(relaxed, curvature="fisher", damping=0.1),
    }
    for name, loss in losses.items():
        keras.utils.set_random_seed(0)
        model = warcraft_resnet(tuple(maps.shape[1:]), grid_size=grid)
        optimizer = keras.optimizers.Adam(5e-4)
        optimizer.build(model.trainable_variables)

        # What fit()'s compiled step does, without its iterator plumbing.
        @tf.function(jit_compile=True)
        def train_step(x, y, model=model, loss=loss, optimizer=optimizer):
            with tf.GradientTape() as tape:
                value = loss(y, model(x, training=True))
            gradients = tape.gradient(value, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return value

        variants[name] = lambda step=train_step: step(maps, truth)
    return variants


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=70)
    parser.add_argument("--grid", type=int, default=12)
    parser.add_argument("--image", type=int, default=96)
    parser.add_argument("--samples", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--train-rounds", type=int, default=15)
    parser.add_argument("--unroll", action=argparse.BooleanOptionalAction, default=True,
                        help="unrolled relaxed path in the training steps (the default of "
                             "ShortestPathLoss); --no-unroll uses tf.while_loops")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    costs = tf.constant(rng.uniform(0.1, 2.0, (args.batch, args.grid, args.grid)), tf.float32)
    truth = shortest_path(tf.constant(rng.uniform(0.1, 2.0, costs.shape), tf.float32))
    maps = tf.constant(rng.uniform(0.0, 1.0, (args.batch, args.image, args.image, 3)), tf.float32)

    print(f"batch {args.batch}, {args.grid}x{args.grid} maps, {args.image}x{args.image} images; "
          f"medians of {args.rounds} / {args.train_rounds} interleaved rounds (XLA)")
    timings = interleaved_medians(algorithm_variants(costs, truth, args.samples), args.rounds)
    reference = timings["relaxed path fwd+bwd"]
    print(f"{'operation':45s} {'median ms':>10s} {'x relaxed':>10s}")
    for name, seconds in timings.items():
        print(f"{name:45s} {1e3 * seconds:10.2f} {seconds / reference:10.2f}")

    print(f"training steps, warcraft_resnet + ShortestPathLoss(unroll={args.unroll}):")
    steps = interleaved_medians(training_variants(maps, truth, args.grid, args.unroll),
                                args.train_rounds)
    for name, seconds in steps.items():
        print(f"{name:45s} {1e3 * seconds:10.2f}")
    ratio = steps["Newton step (Fisher)"] / steps["regular step"]
    print(f"{'training-step ratio Newton/regular (Fisher)':45s} {ratio:10.3f}  (goal <= 1.05)")
    return {"algorithms": timings, "training": steps, "ratio": ratio}


if __name__ == "__main__":
    main()
