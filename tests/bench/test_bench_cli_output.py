"""What the benchmark command line prints: no TensorFlow start-up noise, no bars in a log."""

import os
import subprocess
import sys

import keras
import pytest

from keras_newton.bench import quiet_start, training
from keras_newton.bench.sort_task import sort_task
from keras_newton.bench.task import Variant

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What TensorFlow 2.21 writes to stderr while it loads and first looks for
# devices; TF_CPP_MIN_LOG_LEVEL hides none of it.
NOISE = ("absl::InitializeLog", "cudart_stub", "port.cc", "cpu_feature_guard", "cuInit")


def _cli(*args, **env):
    environment = {k: v for k, v in os.environ.items()
                   if k not in (quiet_start.LOG_LEVEL_ENV, quiet_start.MARK_ENV)}
    environment.update(PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-m", "keras_newton.bench", *args],
                          capture_output=True, text=True, timeout=300, env=environment,
                          cwd=ROOT)


def test_the_cli_starts_without_tensorflow_noise_and_keeps_its_own_errors():
    # Every command imports TensorFlow (the package does); a bad flag is the
    # cheapest one, and its argparse error shows that stderr was restored.
    result = _cli("sort", "--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert not [noise for noise in NOISE if noise in result.stderr], result.stderr
    # A user who sets the log level gets TensorFlow's own behaviour.
    result = _cli("sort", "--no-such-flag", TF_CPP_MIN_LOG_LEVEL="0")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr


def test_quiet_start_respects_the_users_log_level_and_marks_its_own():
    environ = {}
    assert not quiet_start.user_set_log_level(environ)
    environ[quiet_start.LOG_LEVEL_ENV] = "0"
    assert quiet_start.user_set_log_level(environ)
    # A worker inherits the command line's setting with the mark: not the user's.
    environ.update({quiet_start.LOG_LEVEL_ENV: quiet_start.LOG_LEVEL, quiet_start.MARK_ENV: "1"})
    assert not quiet_start.user_set_log_level(environ)


def test_stderr_to_devnull_hides_the_descriptor_and_restores_it(tmp_path):
    # The module is loaded from its file: importing the package would load TensorFlow.
    path = os.path.join(ROOT, "keras_newton", "bench", "quiet_start.py")
    script = ("import importlib.util, os, sys\n"
              f"spec = importlib.util.spec_from_file_location('quiet_start', {path!r})\n"
              "module = importlib.util.module_from_spec(spec)\n"
              "spec.loader.exec_module(module)\n"
              "stderr_to_devnull = module.stderr_to_devnull\n"
              "with stderr_to_devnull():\n"
              "    os.write(2, b'hidden\\n')\n"
              "os.write(2, b'shown\\n')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    assert "shown" in result.stderr and "hidden" not in result.stderr


@pytest.mark.parametrize("tty,expected", [(True, (1, False)), (False, (0, True))])
def test_auto_verbosity_is_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch, tty, expected):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    assert training.fit_verbosity("auto") == expected
    assert training.fit_verbosity(None) == expected
    assert training.fit_verbosity(2) == (2, False)
    with pytest.raises(ValueError, match="verbose"):
        training.fit_verbosity(3)


def test_a_run_in_a_log_prints_one_line_per_evaluation(tmp_path, capfd):
    keras.backend.clear_session()
    task = sort_task({"n": 3, "steps": 6, "eval_every": 2, "batch_size": 3, "eval_sets": 6})
    record = training.run_training(task, Variant("newton-fisher", newton="fisher",
                                                 damping=0.1), 3, str(tmp_path),
                                   verbose="auto", jit_compile=False)
    out = capfd.readouterr().out  # pytest's capture is not a terminal
    lines = [line for line in out.splitlines() if line.startswith("newton-fisher seed 3 step ")]
    assert [line.split(":")[0] for line in lines] == [
        f"newton-fisher seed 3 step {h['step']}" for h in record["history"]]
    assert all("val_exact_match" in line and "test_exact_match" in line for line in lines)
    assert "\x1b" not in out and "\r" not in out  # no progress-bar escape codes
