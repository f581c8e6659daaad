"""Classification with softmax cross-entropy (the paper's sanity experiment).

Models M1–M3 (5-layer ReLU MLPs of 100/400/1600 units) and M4/M5 (LeNet-5
with sigmoid / ReLU) trained with SGD or Adam on softmax cross-entropy, whose
Newton loss has closed forms (Petersen et al., 2024, Example 2):

.. math::

    g = q - p, \\qquad H = \\operatorname{diag}(q) - q q^\\top,
    \\qquad q = \\operatorname{softmax}(y).

Variants: the loss itself, the element-wise Hessian, the empirical Hessian
and the empirical Fisher. Metric: test accuracy (model selection on the
validation accuracy).

Example:
  >>> task = classify_task(dict(CLASSIFY_DEFAULTS, steps=5, eval_every=5))
  >>> task.eval_sets["test"][0].shape[1:]
  (8, 8, 1)
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_newton.bench.task import Task
from keras_newton.datasets import classification
from keras_newton.models import MODEL_SPECS, classification_model

OPTIMIZERS = ("sgd", "adam")

CLASSIFY_DEFAULTS = {
    "model": "M1",
    "optimizer": "sgd",
    "learning_rate": None,     # None: 0.1 for SGD, 1e-3 for Adam
    "batch_size": 100,
    "steps": 10_000,
    "eval_every": 500,
    "dataset": "digits",       # offline default; TFDS: "mnist", "cifar10"
    "data_dir": None,
}


def _accuracy(y_true, logits):
    return tf.cast(tf.equal(tf.argmax(y_true, -1), tf.argmax(logits, -1)), tf.float32)


def classify_task(config: dict) -> Task:
    """Builds the classification task of ``config`` (keys as in ``CLASSIFY_DEFAULTS``)."""
    config = dict(CLASSIFY_DEFAULTS, **config)
    if config["model"] not in MODEL_SPECS:
        raise ValueError(f"model must be one of {tuple(MODEL_SPECS)}, got {config['model']!r}")
    if config["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {config['optimizer']!r}")
    if config["learning_rate"] is None:
        config["learning_rate"] = 0.1 if config["optimizer"] == "sgd" else 1e-3
    splits = {}
    for split in ("train", "validation", "test"):
        x, labels = classification.load_classification(
            config["dataset"], split, data_dir=config["data_dir"])
        splits[split] = (x, np.eye(10, dtype=np.float32)[labels])
    batch_size, seed = int(config["batch_size"]), int(config.get("data_seed", 0))
    train_x, train_y = splits["train"]

    def train_stream(start_step: int):
        dataset = tf.data.Dataset.from_tensor_slices((train_x, train_y))
        dataset = dataset.shuffle(len(train_x), seed=seed, reshuffle_each_iteration=True)
        return dataset.repeat().batch(batch_size, drop_remainder=True).skip(int(start_step))

    def make_optimizer(total_steps: int):
        rate = float(config["learning_rate"])
        if config["optimizer"] == "sgd":
            return keras.optimizers.SGD(rate)
        return keras.optimizers.Adam(rate)

    return Task(
        name="classify",
        build_model=lambda: classification_model(config["model"], train_x.shape[1:]),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        train_stream=train_stream,
        eval_sets={"validation": splits["validation"], "test": splits["test"]},
        metrics={"accuracy": _accuracy},
        selection="accuracy",
        make_optimizer=make_optimizer,
        config=config,
    )


def describe(config: dict) -> str:
    """Short label, e.g. ``"M1 (sgd)"``."""
    return f"{config['model']} ({config['optimizer']})"
