"""A quiet start for the benchmark command line: TensorFlow's C++ start-up logs hidden.

Loading TensorFlow 2.21 writes a screenful to standard error before the
command line has printed anything: ``oneDNN custom operations are on``
(``port.cc``), ``Could not find cuda drivers`` (``cudart_stub.cc``), the
``cpu_feature_guard`` note about unused instruction sets, each library load's
``All log messages before absl::InitializeLog() is called are written to
STDERR``, and, at the first device query, ``failed call to cuInit``. These
come from absl logging before it is initialized, so ``TF_CPP_MIN_LOG_LEVEL``
does not hide them (not even ``3``).

When the process is the benchmark command line and the user has not set
``TF_CPP_MIN_LOG_LEVEL``, :func:`import_tensorflow_if_launched` therefore
imports TensorFlow and queries its devices with file descriptor 2 pointed at
``/dev/null``, restores it, and sets ``TF_CPP_MIN_LOG_LEVEL=2`` for the rest
of the run (C++ errors still show). A user who sets the variable gets
TensorFlow's own behaviour. Worker processes started by the command line
inherit the variable together with :data:`MARK_ENV`, which tells them that
the command line, not the user, set it.

Importing this module does no TensorFlow work.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, MutableMapping

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# "1" when LOG_LEVEL_ENV was set by the command line (inherited by workers).
MARK_ENV = "KERAS_NEWTON_QUIET_START"
# Hides INFO and WARNING of TensorFlow's C++ logging after the start; errors show.
LOG_LEVEL = "2"


def user_set_log_level(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether the user (not the command line) set ``TF_CPP_MIN_LOG_LEVEL``."""
    environ = os.environ if environ is None else environ
    return LOG_LEVEL_ENV in environ and environ.get(MARK_ENV) != "1"


@contextlib.contextmanager
def stderr_to_devnull() -> Iterator[None]:
    """Points file descriptor 2 at ``/dev/null`` inside the block, then restores it.

    C++ code writes to the descriptor, not to ``sys.stderr``, so this is what
    hides it. An exception raised inside the block is reported after the
    descriptor is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w", encoding="utf-8") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def import_tensorflow_quietly(environ: MutableMapping[str, str] | None = None) -> bool:
    """Imports TensorFlow without its start-up logs, unless the user set the log level.

    Returns:
      Whether the start was made quiet (``False`` when the user set
      ``TF_CPP_MIN_LOG_LEVEL`` or TensorFlow was loaded already).
    """
    environ = os.environ if environ is None else environ
    if user_set_log_level(environ) or "tensorflow" in sys.modules:
        return False
    environ[LOG_LEVEL_ENV] = LOG_LEVEL
    environ[MARK_ENV] = "1"
    with stderr_to_devnull():
        import tensorflow as tf

        # The first device query initializes the platforms (cuInit).
        tf.config.list_physical_devices()
    return True


def import_tensorflow_if_launched() -> bool:
    """:func:`import_tensorflow_quietly` when this process is the benchmark CLI."""
    from keras_newton.bench.portable_numerics import launched_command_line

    if launched_command_line() is None:
        return False
    return import_tensorflow_quietly()


__all__ = ["LOG_LEVEL", "LOG_LEVEL_ENV", "MARK_ENV", "import_tensorflow_if_launched",
           "import_tensorflow_quietly", "stderr_to_devnull", "user_set_log_level"]
