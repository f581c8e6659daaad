"""The shortest-path task's schedule: epochs are whole batches of the training maps."""

import numpy as np
import pytest

from keras_newton.bench import path_task


@pytest.mark.parametrize("train_maps, batch_size, steps_per_epoch", [(10, 4, 2), (8, 4, 2),
                                                                     (3, 4, 1)])
def test_epochs_count_whole_batches(train_maps, batch_size, steps_per_epoch):
    task = path_task.path_task({"grid_size": 3, "train_maps": train_maps, "eval_maps": 1,
                                "batch_size": batch_size, "epochs": 3,
                                "decay_epochs": (1, 2)})
    assert task.config["steps"] == 3 * steps_per_epoch
    assert task.config["eval_every"] == steps_per_epoch
    schedule = task.make_optimizer(task.config["steps"])._learning_rate
    rate = path_task.PATH_DEFAULTS["learning_rate"]
    assert schedule.boundaries == [steps_per_epoch, 2 * steps_per_epoch]
    # Learning rate ×0.1 once the first epoch's last step is done.
    np.testing.assert_allclose([float(schedule(steps_per_epoch)),
                                float(schedule(steps_per_epoch + 1))],
                               [rate, rate * 0.1], rtol=1e-6)
    # An epoch never asks for more maps than there are (the stream drops the rest).
    batches = list(task.train_stream(0).take(steps_per_epoch).as_numpy_iterator())
    assert all(len(x) == batch_size for x, _ in batches)


def test_xla_support_check():
    check = path_task.check_xla_support
    with pytest.raises(ValueError, match="--no-xla"):
        check({"method": "relaxed", "loop": "while"}, ["none", "hessian"], True)
    with pytest.raises(ValueError, match="elementwise_hessian"):
        check({"loop": "while"}, ["elementwise_hessian"], True)  # relaxed is the default
    check({"loop": "while"}, ["hessian"], False)
    check({"loop": "while"}, ["none", "fisher"], True)
    check({"loop": "for"}, ["hessian"], True)
    check({"method": "perturbed", "loop": "while"}, ["hessian"], True)
    # Loops as tf.while_loops (--no-unroll): the same, unless the Hessian
    # sketch takes finite-difference products (first derivatives only).
    with pytest.raises(ValueError, match="--no-unroll"):
        check({"unroll": False}, ["hessian"], True)
    finite_differences = {"hessian_rank": 2, "hessian_products": "finite_differences"}
    check({"unroll": False}, ["hessian"], True, finite_differences)
    check({"loop": "while"}, ["hessian"], True, finite_differences)
    with pytest.raises(ValueError, match="elementwise_hessian"):
        check({"unroll": False}, ["elementwise_hessian"], True, finite_differences)
