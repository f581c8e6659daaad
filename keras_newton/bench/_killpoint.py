"""Deterministic kill points: a testing aid for the crash safety of benchmark runs.

Every write of a benchmark run passes named points (see
:mod:`keras_newton.bench.training` for the list). With the environment
variable ``KERAS_NEWTON_KILL_AT=<point>:<count>`` set, the process sends
itself ``SIGKILL`` the ``count``-th time (1-based, counted per process) it
reaches ``<point>``; a test can thus kill a real run at an exact place, for
example between writing a temporary file and renaming it into place, and
check that the next run resumes. At a ``…:torn`` point the temporary file
being written is first cut to half its size, as a kill inside the write
would leave it. With ``KERAS_NEWTON_KILL_LOG=<file>`` every point reached is
appended to that file (one name a line), so a test can list the points of an
uninterrupted run. Neither variable is meant for anything but tests; unset,
a point costs one dictionary lookup.

Example (shell)::

    KERAS_NEWTON_KILL_AT=backup-weights:before-rename:2 \\
        python -m keras_newton.bench sort --quick ...    # dies by SIGKILL
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "KERAS_NEWTON_KILL_AT"
KILL_LOG_ENV = "KERAS_NEWTON_KILL_LOG"

_reached: dict[str, int] = {}


def kill_point(name: str, torn: str | None = None) -> None:
    """Kills this process here if ``KERAS_NEWTON_KILL_AT`` names this visit of ``name``.

    Args:
      name: the point's name, e.g. ``"history:before-rename"``.
      torn: a file to cut to half its size just before dying (a write that
        a kill interrupted halfway).
    """
    log = os.environ.get(KILL_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(name + "\n")
    spec = os.environ.get(KILL_AT_ENV)
    if not spec:
        return
    point, _, count = spec.rpartition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] != int(count):
        return
    if torn is not None and os.path.exists(torn):
        with open(torn, "r+b") as stream:
            stream.truncate(os.path.getsize(torn) // 2)
    _die()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
