"""Noise state of stochastic losses: reset per run, saved per epoch, restored on resume.

Monte-Carlo losses (:class:`keras_newton.losses.FenchelYoungLoss`,
:class:`keras_newton.losses.SmoothedLoss`) draw their noise from a
``keras.random.SeedGenerator`` whose state variable is ``[seed, counter]``;
every call advances the counter. The weights backup of a run does not hold
that variable, and a grid reuses one loss object for all its runs, so a
benchmark run must

* reset every counter to 0 when it starts afresh (its noise must not depend
  on the runs before it in the process), and
* save the states after every epoch and restore those of the restored epoch
  when it resumes (the resumed run must draw the noise the uninterrupted
  run drew).

The states are kept in one JSON file per run, ``{"<epoch>": {name: [seed,
counter]}}``, keyed by the number of completed epochs (the epoch a resumed
run starts at, as in the backup's manifest). Older epochs are
kept, so a run killed after saving the states of an epoch but before its
weights backup still finds the states of the epoch it restores.

Example:
  >>> import keras
  >>> from keras_newton.losses import FenchelYoungLoss
  >>> loss = FenchelYoungLoss("shortest_path", seed=3)
  >>> generators = loss_seed_generators(loss)
  >>> _ = loss.seed_generator.next()
  >>> read_states(generators)
  {'seed_generator': [3, 1]}
  >>> reset_counters(generators)
  >>> read_states(generators)
  {'seed_generator': [3, 0]}
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import keras
import numpy as np

from keras_newton.bench import results

SEED_STATE_FILE = "seed_states.json"


def loss_seed_generators(loss) -> dict[str, keras.random.SeedGenerator]:
    """The ``keras.random.SeedGenerator`` attributes of ``loss``, by attribute name."""
    return {name: value for name, value in sorted(vars(loss).items())
            if isinstance(value, keras.random.SeedGenerator)}


def read_states(generators: Mapping[str, keras.random.SeedGenerator]) -> dict[str, list[int]]:
    """``{name: [seed, counter]}`` of every generator, as Python ints."""
    return {name: [int(v) for v in np.asarray(generator.state.numpy())]
            for name, generator in generators.items()}


def assign_states(generators: Mapping[str, keras.random.SeedGenerator],
                  states: Mapping[str, list[int]]) -> None:
    """Sets every generator to its saved ``[seed, counter]``.

    Raises:
      KeyError: when ``states`` lacks one of the generators.
    """
    for name, generator in generators.items():
        if name not in states:
            raise KeyError(f"no saved state for seed generator {name!r}; saved: "
                           f"{sorted(states)}")
        generator.state.assign(np.asarray(states[name], generator.state.dtype))


def reset_counters(generators: Mapping[str, keras.random.SeedGenerator]) -> None:
    """Sets every generator back to ``[seed, 0]`` (its state when built)."""
    for generator in generators.values():
        seed = np.asarray(generator.state.numpy())[0]
        generator.state.assign(np.asarray([seed, 0], generator.state.dtype))


def load_epoch_states(path: str) -> dict[str, dict[str, list[int]]]:
    """All saved states of a run, ``{"<epoch>": {name: [seed, counter]}}`` (``{}``
    without a file)."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def save_epoch_states(path: str, epoch: int, states: Mapping[str, list[int]]) -> None:
    """Adds (or replaces) the states after ``epoch`` completed epochs, atomically."""
    saved = load_epoch_states(path)
    saved[str(int(epoch))] = dict(states)
    results.atomic_write_json(path, saved)


__all__ = ["SEED_STATE_FILE", "assign_states", "load_epoch_states", "loss_seed_generators",
           "read_states", "reset_counters", "save_epoch_states"]
