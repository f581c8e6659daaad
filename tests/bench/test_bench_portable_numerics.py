"""Portable numerics of the benchmark CLI: the settings, who gets them, and the record."""

import doctest
import json
import os
import subprocess
import sys

import pytest

from keras_newton.bench import portable_numerics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_module_examples():
    failures, _ = doctest.testmod(portable_numerics)
    assert failures == 0


def test_apply_adds_every_setting_once():
    env = {}
    setting = portable_numerics.apply(True, environ=env, tensorflow_imported=False)
    assert env["XLA_FLAGS"].split() == list(portable_numerics.XLA_FLAGS)
    assert env["TF_ENABLE_ONEDNN_OPTS"] == "0" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert setting == {"portable": True, "set_before_tensorflow": True,
                       "XLA_FLAGS": env["XLA_FLAGS"], "TF_ENABLE_ONEDNN_OPTS": "0",
                       "ONEDNN_MAX_CPU_ISA": "AVX2"}
    portable_numerics.apply(True, environ=env, tensorflow_imported=False)
    assert env["XLA_FLAGS"].split() == list(portable_numerics.XLA_FLAGS)


def test_apply_keeps_what_the_user_set():
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_cpu_use_xnnpack=true",
           "TF_ENABLE_ONEDNN_OPTS": "1"}
    portable_numerics.apply(True, environ=env, tensorflow_imported=False)
    flags = env["XLA_FLAGS"].split()
    assert flags[:2] == ["--xla_dump_to=/tmp/x", "--xla_cpu_use_xnnpack=true"]
    assert "--xla_cpu_use_xnnpack=false" not in flags
    assert "--xla_cpu_max_isa=AVX2" in flags and "--xla_cpu_use_onednn=false" in flags
    assert env["TF_ENABLE_ONEDNN_OPTS"] == "1"


def test_native_changes_nothing_and_says_so():
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    setting = portable_numerics.apply(False, environ=env, tensorflow_imported=False)
    assert env == {"XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert setting["portable"] is False and setting["TF_ENABLE_ONEDNN_OPTS"] == ""


def test_late_request_warns():
    with pytest.warns(RuntimeWarning, match="after TensorFlow was imported"):
        setting = portable_numerics.apply(True, environ={}, tensorflow_imported=True)
    assert setting["set_before_tensorflow"] is False


@pytest.mark.parametrize("orig_argv, argv, expected", [
    (["python", "-m", "keras_newton.bench", "grid", "--quick"], ["-m"], ["grid", "--quick"]),
    (["python", "-X", "utf8", "-m", "keras_newton.bench.__main__", "sort"], ["-m"], ["sort"]),
    (["python", "/usr/bin/keras-newton-bench", "sort", "--native-numerics"],
     ["/usr/bin/keras-newton-bench", "sort", "--native-numerics"],
     ["sort", "--native-numerics"]),
    (["python", "-m", "pytest", "-q"], ["pytest", "-q"], None),
    (["python", "train.py", "keras_newton.bench"], ["train.py", "keras_newton.bench"], None),
])
def test_only_the_cli_is_recognized(monkeypatch, orig_argv, argv, expected):
    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    monkeypatch.setattr(sys, "argv", argv)
    assert portable_numerics.launched_command_line() == expected


def test_opt_out_by_flag_or_environment(monkeypatch):
    monkeypatch.delenv(portable_numerics.NATIVE_ENV, raising=False)
    assert not portable_numerics.wants_native(["grid", "--quick"])
    assert portable_numerics.wants_native(["grid", "--quick", "--native-numerics"])
    monkeypatch.setenv(portable_numerics.NATIVE_ENV, "1")
    assert portable_numerics.wants_native(["grid", "--quick"])


TINY_RUN = ["sort", "--sorter", "neural_sort", "--n", "3", "--steps", "1", "--eval-every", "1",
            "--batch-size", "2", "--eval-sets", "4", "--seeds", "0", "--newton", "none",
            "--verbose", "0"]


@pytest.mark.parametrize("extra, portable", [([], True), (["--native-numerics"], False)])
def test_cli_records_the_setting_it_ran_with(tmp_path, extra, portable):
    env = {k: v for k, v in os.environ.items()
           if k not in (*portable_numerics.RECORDED, portable_numerics.NATIVE_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, "-m", "keras_newton.bench", *TINY_RUN, *extra,
                    "--output-dir", str(tmp_path)], check=True, env=env, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    numerics = json.load(open(tmp_path / "results.json"))["numerics"]
    assert numerics["portable"] is portable
    assert numerics["set_before_tensorflow"] is True
    if portable:
        assert numerics["XLA_FLAGS"].split() == list(portable_numerics.XLA_FLAGS)
        assert numerics["TF_ENABLE_ONEDNN_OPTS"] == "0"
        assert numerics["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    else:
        assert all(numerics[name] == "" for name in portable_numerics.RECORDED)
