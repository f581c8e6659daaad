"""Portable numerics: the same benchmark table on every x86-64 CPU.

A benchmark run is thousands of optimizer steps, and a training run amplifies
a one-ulp difference at step one into a different model by step 500. Three
parts of TensorFlow round differently depending on the processor they run on:

* **XLA:CPU** compiles every step for the host's instruction set. With
  AVX-512 its loops and reductions use 16 float32 lanes instead of 8, which
  changes the order in which a sum is accumulated.
* **XNNPACK and oneDNN inside XLA** (dots, convolutions) choose their kernels
  at run time by instruction set.
* **oneDNN** kernels, inside and outside XLA, do the same. Turning
  TensorFlow's oneDNN operations off is not enough: a training run's weights
  still change with ``ONEDNN_MAX_CPU_ISA`` (measured: AVX2, AVX-512 and
  SSE4.1 give three different runs), so oneDNN is capped as well.

Before TensorFlow is imported, the benchmark CLI therefore caps XLA:CPU's code
generation at AVX2 (``--xla_cpu_max_isa=AVX2``), turns off XNNPACK and oneDNN
inside XLA (``--xla_cpu_use_xnnpack=false --xla_cpu_use_onednn=false``),
turns off TensorFlow's oneDNN kernels (``TF_ENABLE_ONEDNN_OPTS=0``) and caps
what oneDNN still runs at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``). The kernels
that remain (Eigen's) are compiled into the TensorFlow binary for one
instruction set. AVX2 with FMA is on every x86-64 server CPU since 2013. The
result is then a function of the TensorFlow build, the seeds and the command.
It does not depend on whether the CPU has AVX-512. A cap above the machine's
own instruction set cannot be met: XLA then compiles for what the CPU has.

``--native-numerics`` (or ``KERAS_NEWTON_NATIVE_NUMERICS=1``) opts out and lets every library use the whole
instruction set. The setting in force is recorded in each result's JSON
under ``"numerics"``.

Settings that a user has made already are kept: a flag that is already in
``XLA_FLAGS`` and an environment variable that is already set are left
alone.

Example:
  >>> env = {"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"}
  >>> apply(True, environ=env, tensorflow_imported=False)["portable"]
  True
  >>> env["XLA_FLAGS"]   # the user's cap is kept, the other flags are added
  '--xla_cpu_max_isa=SSE4_2 --xla_cpu_use_xnnpack=false --xla_cpu_use_onednn=false'
  >>> env["TF_ENABLE_ONEDNN_OPTS"]
  '0'
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import MutableMapping, Sequence

# Opt-out flag of the benchmark CLI, and the environment variable ("1") that
# says the same to worker processes.
NATIVE_FLAG = "--native-numerics"
NATIVE_ENV = "KERAS_NEWTON_NATIVE_NUMERICS"

# XLA:CPU debug options; each is "--name=value".
XLA_FLAGS = ("--xla_cpu_max_isa=AVX2", "--xla_cpu_use_xnnpack=false",
             "--xla_cpu_use_onednn=false")

# Environment variables read when TensorFlow loads.
ENVIRONMENT = {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}

# Recorded with every result: the variables that decide the numerics.
RECORDED = ("XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")


def _flag_name(flag: str) -> str:
    return flag.split("=", 1)[0].strip()


def wants_native(argv: Sequence[str]) -> bool:
    """Whether a command line asks for :data:`NATIVE_FLAG` (or the environment
    for :data:`NATIVE_ENV`)."""
    return NATIVE_FLAG in argv or os.environ.get(NATIVE_ENV) == "1"


def apply(portable: bool = True, *, environ: MutableMapping[str, str] | None = None,
          tensorflow_imported: bool | None = None) -> dict:
    """Sets the environment for portable numerics, before TensorFlow loads.

    Args:
      portable: add the portable settings (``False`` changes nothing and only
        records the current state).
      environ: the environment to change (``os.environ`` by default).
      tensorflow_imported: whether TensorFlow is loaded already (looked up in
        ``sys.modules`` by default). When it is, the settings are still
        written, but TensorFlow has read its environment: a warning says that
        the numerics may not be portable.

    Returns:
      The setting in force, as :func:`current_setting` describes it.
    """
    environ = os.environ if environ is None else environ
    if tensorflow_imported is None:
        tensorflow_imported = "tensorflow" in sys.modules
    if portable:
        present = {_flag_name(f) for f in environ.get("XLA_FLAGS", "").split() if f}
        added = [f for f in XLA_FLAGS if _flag_name(f) not in present]
        if added:
            environ["XLA_FLAGS"] = " ".join(
                filter(None, [environ.get("XLA_FLAGS", "").strip(), *added]))
        for name, value in ENVIRONMENT.items():
            environ.setdefault(name, value)
        if tensorflow_imported:
            warnings.warn(
                "portable numerics were requested after TensorFlow was imported; "
                "TF_ENABLE_ONEDNN_OPTS only takes effect in a new process, so results may "
                "depend on this CPU's instruction set", RuntimeWarning, stacklevel=2)
    return current_setting(portable, environ=environ,
                           tensorflow_imported=tensorflow_imported)


def current_setting(portable: bool, *, environ: MutableMapping[str, str] | None = None,
                    tensorflow_imported: bool = False) -> dict:
    """The numerics setting to record with a result.

    Returns:
      ``{"portable": bool, "set_before_tensorflow": bool, "XLA_FLAGS": str,
      "TF_ENABLE_ONEDNN_OPTS": str, "ONEDNN_MAX_CPU_ISA": str}`` (empty
      strings for unset variables).
    """
    environ = os.environ if environ is None else environ
    setting = {"portable": bool(portable), "set_before_tensorflow": not tensorflow_imported}
    setting.update({name: environ.get(name, "") for name in RECORDED})
    return setting


_IN_FORCE: dict | None = None


def configure_from_argv(argv: Sequence[str]) -> dict:
    """Applies the CLI's setting once per process (portable unless opted out)."""
    global _IN_FORCE
    if _IN_FORCE is None:
        _IN_FORCE = apply(not wants_native(argv))
    return _IN_FORCE


def launched_command_line() -> list[str] | None:
    """The benchmark CLI's arguments when this process is the CLI, else ``None``.

    The CLI is ``keras-newton-bench …`` or ``python -m keras_newton.bench …``;
    both import the package (and so TensorFlow) before any code of the CLI
    runs, so the package asks this first.
    """
    original = list(getattr(sys, "orig_argv", []))
    for index in range(len(original) - 1):
        if original[index] == "-m" and original[index + 1] in (
                "keras_newton.bench", "keras_newton.bench.__main__"):
            return original[index + 2:]
    if sys.argv and os.path.basename(sys.argv[0]) == "keras-newton-bench":
        return list(sys.argv[1:])
    return None


def configure_if_launched() -> None:
    """Applies the CLI's setting when this process is the benchmark CLI."""
    argv = launched_command_line()
    if argv is not None:
        configure_from_argv(argv)


def in_force() -> dict:
    """The setting of this process: the one the CLI applied, or else the environment's.

    A process that did not start through the CLI (a test, a notebook) reports
    ``portable`` when the environment holds every portable setting.
    """
    if _IN_FORCE is not None:
        return dict(_IN_FORCE)
    present = {f for f in os.environ.get("XLA_FLAGS", "").split() if f}
    portable = (all(f in present for f in XLA_FLAGS)
                and all(os.environ.get(k) == v for k, v in ENVIRONMENT.items()))
    return current_setting(portable, tensorflow_imported="tensorflow" in sys.modules)


__all__ = ["ENVIRONMENT", "NATIVE_ENV", "NATIVE_FLAG", "RECORDED", "XLA_FLAGS", "apply",
           "configure_from_argv",
           "configure_if_launched", "current_setting", "in_force", "launched_command_line",
           "wants_native"]
