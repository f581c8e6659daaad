"""The sorting task's training stream: cached index batches give the streamed sets."""

import numpy as np
import pytest

from keras_newton.bench import sort_task as sort_task_lib


@pytest.mark.parametrize("start", [0, 3, 5])
def test_cached_stream_equals_the_streamed_sets(start, monkeypatch):
    task = sort_task_lib.sort_task({"n": 3, "steps": 5, "eval_every": 5, "batch_size": 2,
                                    "eval_sets": 4})
    # Batches 5 and 6 lie past the budget: the cached stream continues with the stream.
    cached = list(task.train_stream(start).take(7 - start).as_numpy_iterator())
    monkeypatch.setattr(sort_task_lib, "MAX_CACHED_ITEMS", 0)
    streamed = list(task.train_stream(start).take(7 - start).as_numpy_iterator())
    assert len(cached) == len(streamed) == 7 - start
    for (x_cached, y_cached), (x_streamed, y_streamed) in zip(cached, streamed):
        np.testing.assert_array_equal(x_cached, x_streamed)
        np.testing.assert_array_equal(y_cached, y_streamed)
