"""Cost of Newton losses for ranking supervision, and of diff_sort itself.

Part 1 times one training step of the 4-digit-MNIST CNN of the sorting
literature (``keras_newton.models.four_digit_cnn``: 28x112 images, sets of
``n = 10``, batch of 100 sets) trained with the logistic odd-even sorting
network loss, three ways, side by side in one process:

* regular: ``SortingLoss`` (backprop through the sorting network),
* Newton-Hessian and Newton-Fisher: ``NewtonLoss(SortingLoss, curvature=...)``
  (Petersen et al., NeurIPS 2024; the paper reports 3.7x for the Hessian).

Every step is one XLA-compiled function (forward, loss, gradient, SGD update).
After compilation and warm-up, the variants are run interleaved in a fresh
random order every round and the per-variant median is taken, so that load on
a shared machine hits all variants alike; the reported ratios are
``median(Newton) / median(regular)``. Random images are fine: the cost does
not depend on the pixel values. Also timed (same protocol) is the Newton
target alone, to show where the extra time of a Newton step goes.

Part 2 times forward + backward of ``diff_sort`` (odd-even, logistic) for
``n`` in {5, 10, 32, 100} on a batch of 100 vectors, XLA-compiled.

    python examples/benchmark_sorting_overhead.py             # paper sizes
    python examples/benchmark_sorting_overhead.py --rounds 20 --batch-size 50
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
from keras_newton.losses.sorting_loss import SortingLoss
from keras_newton.models.four_digit_cnn import four_digit_cnn
from keras_newton.sorting import diff_sort

SORTER_OPTIONS = {"network": "odd_even", "relaxation": "logistic", "steepness": 10.0}
VARIANTS = ("regular", "hessian", "fisher")
GOALS = {"hessian": 1.10, "fisher": 1.03}


def _sync(value) -> None:
    # Forces the (asynchronous) step to finish before the clock stops.
    tf.nest.map_structure(lambda t: t.numpy(), value)


def make_train_step(model: keras.Model, loss: keras.losses.Loss):
    """An XLA-compiled SGD step of ``model`` on ``loss`` (own optimizer state)."""
    optimizer = keras.optimizers.SGD(1e-3)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def step(images, values):
        with tf.GradientTape() as tape:
            scores = model(images, training=True)
            value = loss(values, scores)
        gradients = tape.gradient(value, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return value

    return step


def interleaved_medians(functions: dict, args, rounds: int, warmup: int, seed: int) -> dict:
    """Median seconds per call of each function, run interleaved in random order."""
    for fn in functions.values():  # compile + warm-up, not timed
        for _ in range(1 + warmup):
            _sync(fn(*args))
    order_rng = np.random.default_rng(seed)
    times = {name: [] for name in functions}
    names = list(functions)
    for _ in range(rounds):
        for index in order_rng.permutation(len(names)):
            name = names[index]
            start = time.perf_counter()
            _sync(functions[name](*args))
            times[name].append(time.perf_counter() - start)
    interleaved_medians.last_times = times  # raw per-round times, for diagnosis
    return {name: float(np.median(t)) for name, t in times.items()}


def time_training_steps(
    batch_size: int, set_size: int, image_shape, rounds: int, warmup: int,
    damping: float, seed: int,
) -> dict:
    """Median step time of the three variants and of the Newton targets alone."""
    keras.utils.set_random_seed(seed)
    model = four_digit_cnn(tuple(image_shape), set_size=set_size)
    rng = np.random.default_rng(seed)
    images = tf.constant(rng.random((batch_size, set_size) + tuple(image_shape), np.float32))
    values = tf.constant(rng.random((batch_size, set_size), np.float32))
    sorting = SortingLoss("diff_sort", **SORTER_OPTIONS)
    losses = {
        "regular": sorting,
        "hessian": kn.NewtonLoss(sorting, curvature="hessian", damping=damping),
        "fisher": kn.NewtonLoss(sorting, curvature="fisher", damping=damping),
    }
    steps = {name: make_train_step(model, loss) for name, loss in losses.items()}
    step_times = interleaved_medians(steps, (images, values), rounds, warmup, seed)
    raw = interleaved_medians.last_times
    # Newton / regular within each round, where both saw the same load.
    paired = {
        name: float(np.median(np.asarray(raw[name]) / np.asarray(raw["regular"])))
        for name in ("hessian", "fisher")
    }

    scores = tf.constant(rng.normal(size=(batch_size, set_size)).astype(np.float32))
    targets = {
        name: tf.function(
            lambda t, s, c=name: kn.newton_target(sorting, t, s, curvature=c, damping=damping),
            jit_compile=True,
        )
        for name in ("hessian", "fisher")
    }
    target_times = interleaved_medians(targets, (values, scores), rounds, warmup, seed + 1)
    return {"step": step_times, "target": target_times, "paired_ratios": paired,
            "step_times": raw}


def time_diff_sort(sizes, batch_size: int, rounds: int, warmup: int, seed: int) -> dict:
    """Median forward + backward seconds of diff_sort per ``n`` (interleaved)."""
    rng = np.random.default_rng(seed)
    functions, inputs = {}, {}
    for n in sizes:
        inputs[n] = tf.constant(rng.normal(size=(batch_size, n)).astype(np.float32))
        weights = tf.constant(rng.normal(size=(batch_size, n, n)).astype(np.float32))

        @tf.function(jit_compile=True)
        def forward_backward(x, weights=weights):
            with tf.GradientTape() as tape:
                tape.watch(x)
                sorted_x, permutation = diff_sort(x, **SORTER_OPTIONS)
                value = tf.reduce_sum(permutation * weights) + tf.reduce_sum(sorted_x)
            return tape.gradient(value, x)

        functions[n] = forward_backward
    # Every n gets its own input: wrap so one call signature fits all.
    wrapped = {n: (lambda fn=fn, n=n: fn(inputs[n])) for n, fn in functions.items()}
    return interleaved_medians(wrapped, (), rounds, warmup, seed)


def format_table(result: dict) -> str:
    step, target = result["step"], result["target"]
    lines = [
        f"Training step, four-digit CNN, batch {result['batch_size']} sets of "
        f"n = {result['set_size']}, images {result['image_shape']}, "
        f"{result['rounds']} interleaved rounds (medians, XLA)",
        f"{'variant':<10} {'step ms':>10} {'ratio':>8} {'goal':>6} {'target ms':>10} "
        f"{'1+target/step':>14} {'paired':>8}",
        f"{'regular':<10} {1e3 * step['regular']:>10.1f} {1.0:>8.3f}",
    ]
    for name in ("hessian", "fisher"):
        lines.append(
            f"{name:<10} {1e3 * step[name]:>10.1f} {result['ratios'][name]:>8.3f} "
            f"{GOALS[name]:>6.2f} {1e3 * target[name]:>10.2f} "
            f"{1 + target[name] / step['regular']:>14.4f} "
            f"{result['paired_ratios'][name]:>8.3f}"
        )
    lines.append(
        "ratio: median Newton step / median regular step; paired: median over "
        "rounds of Newton / regular in the same round; 1+target/step: from the "
        "separately timed Newton target alone."
    )
    lines += ["", f"diff_sort (odd_even, logistic) forward+backward, batch "
              f"{result['sort_batch_size']} (medians, XLA)", f"{'n':>5} {'ms':>10}"]
    for n, seconds in result["diff_sort"].items():
        lines.append(f"{n:>5} {1e3 * seconds:>10.3f}")
    return "\n".join(lines)


def main(
    batch_size: int = 100,
    set_size: int = 10,
    image_shape=(28, 112, 1),
    rounds: int = 15,
    warmup: int = 2,
    damping: float = 1e-3,
    sort_sizes=(5, 10, 32, 100),
    sort_batch_size: int = 100,
    seed: int = 0,
    verbose: bool = True,
) -> dict:
    """Runs both parts, prints the table and returns all numbers."""
    result = time_training_steps(
        batch_size, set_size, image_shape, rounds, warmup, damping, seed
    )
    result["ratios"] = {
        name: result["step"][name] / result["step"]["regular"] for name in ("hessian", "fisher")
    }
    result["diff_sort"] = time_diff_sort(sort_sizes, sort_batch_size, rounds, warmup, seed)
    result.update(
        batch_size=batch_size, set_size=set_size, image_shape=tuple(image_shape),
        rounds=rounds, sort_batch_size=sort_batch_size,
    )
    if verbose:
        print(format_table(result), flush=True)
    return result


def _parse(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--set-size", type=int, default=10)
    parser.add_argument("--image-shape", type=int, nargs=3, default=(28, 112, 1))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--damping", type=float, default=1e-3)
    parser.add_argument("--sort-sizes", type=int, nargs="+", default=(5, 10, 32, 100))
    parser.add_argument("--sort-batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    return vars(parser.parse_args(argv))


if __name__ == "__main__":
    main(**_parse())
