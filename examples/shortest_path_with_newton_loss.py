"""Shortest-path supervision through the relaxed Bellman-Ford, with and without a Newton loss.

A small network reads 6×6-cell terrain maps (drawn offline by
``kn.datasets.make_terrain_arrays``) and predicts each cell's cost; it is
trained only on the true shortest paths, through the relaxed shortest path of
AlgoVision (L1 loss between the relaxed and the true path). The same network,
from the same initial weights, is trained with that loss and with its Newton
loss (empirical Hessian, eq. 3 of Petersen et al., NeurIPS 2024); both are
printed with the test perfect-match rate and cost ratio of the exact path of
the predicted costs.

Run: ``python examples/shortest_path_with_newton_loss.py`` (about a minute on
two CPU cores; ``--train-maps`` and ``--epochs`` make it shorter).
"""

import argparse

import keras

import keras_newton as kn


def cell_network(side, grid):  # tile-mean colours -> per-cell MLP -> positive cost
    maps = keras.Input((side, side, 3))
    x = keras.layers.AveragePooling2D(side // grid)(maps)
    x = keras.layers.Dense(32, activation="relu")(x)
    x = keras.layers.Dense(1, activation="softplus")(x)
    return keras.Model(maps, keras.layers.Reshape((grid, grid))(x))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-maps", type=int, default=256)
    parser.add_argument("--test-maps", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    grid, tile = 6, 8
    train = kn.datasets.make_terrain_arrays(args.train_maps, seed=1000, grid_size=grid,
                                            tile_size=tile)
    test = kn.datasets.make_terrain_arrays(args.test_maps, seed=2000, grid_size=grid,
                                           tile_size=tile)
    x, x_test = train["map"] / 255.0, test["map"] / 255.0  # uint8 colours -> [0, 1]
    path = kn.losses.ShortestPathLoss(loss="l1", beta=10.0)
    losses = {"relaxed shortest path": path,
              "relaxed shortest path + Newton loss (Hessian)":
                  kn.NewtonLoss(path, curvature="hessian", damping=1.0)}
    print("| loss | test perfect match (%) | test cost ratio |\n|---|---|---|")
    for name, loss in losses.items():
        keras.utils.set_random_seed(args.seed)  # the same initial weights for both
        model = cell_network(grid * tile, grid)
        model.compile(keras.optimizers.Adam(3e-2), loss=loss)
        model.fit(x, train["path"].astype("float32"), batch_size=32, epochs=args.epochs,
                  verbose=0)
        costs = model.predict(x_test, batch_size=128, verbose=0)
        match = kn.metrics.PerfectMatch()(test["path"].astype("float32"), costs)
        ratio = kn.metrics.CostRatio()(test["weights"], costs)
        print(f"| {name} | {100 * float(match):.1f} | {float(ratio):.4f} |")


if __name__ == "__main__":
    main()
