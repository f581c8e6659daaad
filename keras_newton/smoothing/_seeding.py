"""Seeds for Monte-Carlo losses: reproducible, new each step, XLA-compilable.

A Monte-Carlo loss owns a ``keras.random.SeedGenerator``; each call draws
the next stateless ``[2]`` seed from it (a variable read and increment, which
compiles under XLA and inside ``fit()``'s jitted train step). Two losses built
with the same integer ``seed`` produce the same sequence of noise; successive
calls (training steps) get different noise. ``seed=None`` picks a random
starting seed. The generator's position is not part of ``get_config``: a
deserialized loss restarts the sequence from ``seed``.

Example:

>>> from keras_newton.smoothing.seeding import make_seed_generator, next_seed
>>> generator = make_seed_generator(7)
>>> bool((next_seed(generator) != next_seed(generator)).numpy().any())
True
"""

from typing import Optional

import keras
import tensorflow as tf

from keras_newton._validation import int_at_least


def validate_seed(seed) -> Optional[int]:
    """``None`` or a non-negative Python int."""
    return int_at_least(seed, "seed", minimum=0, allow_none=True)


def make_seed_generator(seed: Optional[int]) -> keras.random.SeedGenerator:
    """A ``keras.random.SeedGenerator`` starting at ``seed`` (create it eagerly)."""
    return keras.random.SeedGenerator(validate_seed(seed))


def next_seed(generator: keras.random.SeedGenerator) -> tf.Tensor:
    """The next ``[2]`` int32 stateless seed of ``generator`` (advances it)."""
    return tf.cast(generator.next() % (2**31 - 1), tf.int32)
