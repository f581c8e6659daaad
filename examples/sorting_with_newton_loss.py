"""Ranking supervision through NeuralSort, with and without a Newton loss.

A scorer sees sets of five two-digit numbers written with scikit-learn's
handwritten digits (offline) and learns, from the true order alone, to give
each number image a score whose order is the numbers' order. The same scorer,
from the same initial weights, is trained with the NeuralSort ranking loss and
with the Newton loss of it (empirical Hessian, eq. 3 of Petersen et al.,
NeurIPS 2024); both are printed as a table of test metrics.

Run: ``python examples/sorting_with_newton_loss.py`` (about a minute on two
CPU cores; ``--train-sets`` and ``--epochs`` make it shorter).
"""

import argparse

import keras

import keras_newton as kn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-sets", type=int, default=3000)
    parser.add_argument("--test-sets", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def sets(split, num_sets):  # [sets, 5, 8, 16, 1] images, [sets, 5] true values
        return kn.datasets.multi_digit_arrays(split, num_sets=num_sets, set_size=5,
                                              num_digits=2, seed=args.seed)

    (x, y), (x_test, y_test) = sets("train", args.train_sets), sets("test", args.test_sets)
    ranking = kn.losses.SortingLoss(sorter="neural_sort", tau=1.0)
    losses = {"NeuralSort": ranking,
              "NeuralSort + Newton loss (Hessian)":
                  kn.NewtonLoss(ranking, curvature="hessian", damping=1e-3)}
    print("| loss | test exact match (%) | test rank accuracy (%) |\n|---|---|---|")
    for name, loss in losses.items():
        keras.utils.set_random_seed(args.seed)  # the same initial weights for both
        model = kn.models.four_digit_mlp(x.shape[2:], set_size=5)
        model.compile(keras.optimizers.Adam(3e-3), loss=loss, jit_compile=True,
                      metrics=[kn.metrics.OrderingExactMatch(),
                               kn.metrics.ElementwiseRankAccuracy()])
        model.fit(x, y, batch_size=100, epochs=args.epochs, verbose=0)
        result = model.evaluate(x_test, y_test, batch_size=500, verbose=0, return_dict=True)
        print(f"| {name} | {100 * result['exact_match']:.1f} "
              f"| {100 * result['rank_accuracy']:.1f} |")


if __name__ == "__main__":
    main()
