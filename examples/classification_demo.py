"""Regular vs Newton losses for classification on real handwritten digits.

Trains the same small ReLU MLP on scikit-learn's bundled 8x8 digits (1797 real
handwritten images; no download) with softmax cross-entropy, once as usual and
once each with the Newton-Hessian and Newton-Fisher losses of Petersen et al.
(NeurIPS 2024), over a few seeds, and prints test accuracy and cross-entropy.

    python examples/classification_demo.py --epochs 8 --seeds 2

A quick check that everything runs (seconds, not a meaningful comparison):

    python examples/classification_demo.py --epochs 1 --seeds 1 --train-size 128 \
        --no-jit-compile
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_newton as kn


def load_data(seed=0, train_size=None):
    """Digits split into 400 test and the rest (or ``train_size``) training images."""
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = keras.utils.to_categorical(digits.target, 10).astype("float32")
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:400], order[400:][:train_size]
    return (x[train], y[train]), (x[test], y[test])


def build_model(seed, variant, damping):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    h = inputs
    for _ in range(4):
        h = keras.layers.Dense(100, activation="relu")(h)
    outputs = keras.layers.Dense(10)(h)
    if variant == "regular":
        return keras.Model(inputs, outputs)
    return kn.NewtonLossModel(inputs, outputs, curvature=variant, damping=damping)


def run(variant, seed, args, data):
    (x_train, y_train), (x_test, y_test) = data
    model = build_model(seed, variant, args.damping)
    model.compile(
        keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=args.jit_compile,
    )
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              verbose=args.verbose, shuffle=True)
    seconds = time.perf_counter() - start
    results = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    return results["accuracy"], results["loss"], seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--damping", type=float, default=0.1)
    parser.add_argument("--train-size", type=int, default=None,
                        help="use only this many training images (default: all 1397)")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=True,
                        help="compile train steps with XLA (default); --no-jit-compile "
                             "skips the compile time in quick checks")
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)

    data = load_data(train_size=args.train_size)
    rows = []
    for variant in ("regular", "hessian", "fisher"):
        results = np.array([run(variant, seed, args, data) for seed in range(args.seeds)])
        rows.append((variant, results))
    print(f"\nDigits (sklearn, 8x8), 5-layer ReLU MLP, Adam lr={args.learning_rate}, "
          f"{args.epochs} epochs, {args.seeds} seeds, damping={args.damping}")
    print("| loss | test accuracy | test cross-entropy | train time (s) |")
    print("|---|---|---|---|")
    for variant, r in rows:
        name = "regular" if variant == "regular" else f"Newton ({variant})"
        print(f"| {name} | {r[:, 0].mean():.3f} ± {r[:, 0].std():.3f} | "
              f"{r[:, 1].mean():.3f} ± {r[:, 1].std():.3f} | {r[:, 2].mean():.1f} |")
    return rows


if __name__ == "__main__":
    main()
