"""tf.distribute: the batch curvature is the statistic of the global batch.

Each configuration trains in a fresh process (logical devices and TF_CONFIG
must be set before TensorFlow starts) and the final weights are compared with
single-device training on the same global batch.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import free_loopback_ports

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_training.py")
# The subprocesses must import this checkout's keras_newton, not whichever one
# is installed (an editable install may point at another checkout).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def subprocess_env(extra=None):
    """``os.environ`` plus ``extra``, with the repository root first on PYTHONPATH."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def _train(tmp_path, strategy, curvature, api, env=None, tag="", options=()):
    apis = [api] if isinstance(api, str) else list(api)  # one model per api, in turn
    out = tmp_path / f"{strategy}-{curvature}-{'-'.join(apis)}{tag}.npz"
    command = [sys.executable, SCRIPT, "--strategy", strategy, "--curvature", curvature,
               "--api", *apis, "--out", str(out), *options]
    return subprocess.Popen(command, env=subprocess_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT), out


def _weights(path, api):
    with np.load(path) as data:
        count = sum(name.startswith(f"{api}_") for name in data.files)
        assert count, f"no {api} weights in {path}: {data.files}"
        return [data[f"{api}_{i}"] for i in range(count)]


def _logged(log, label):
    """The number the training script printed after ``label``."""
    return float(log.split(f"{label}:")[1].split()[0])


def _finish(process):
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output.decode()[-3000:]
    output = output.decode()
    assert f"keras_newton from: {os.path.join(REPO_ROOT, 'keras_newton')}" in output, (
        output[-3000:])
    return output


# Each case trains in two fresh processes; the default suite keeps one case
# per API (the Hessian with the model, the Fisher with the loss) and the
# other two run with -m slow.
@pytest.mark.parametrize("curvature, api", [
    ("hessian", "model"), ("fisher", "loss"),
    pytest.param("hessian", "loss", marks=pytest.mark.slow),
    pytest.param("fisher", "model", marks=pytest.mark.slow),
])
def test_mirrored_strategy_equals_single_device(tmp_path, curvature, api):
    single, single_out = _train(tmp_path, "single", curvature, api)
    mirrored, mirrored_out = _train(tmp_path, "mirrored", curvature, api)
    single_log = _finish(single)
    _finish(mirrored)
    for a, b in zip(_weights(single_out, api), _weights(mirrored_out, api)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # The run must have moved the weights, or the comparison proves nothing
    # (without the all-reduce the weights differ by ~0.2 here).
    assert _logged(single_log, f"{api} largest weight change") > 0.05


@pytest.mark.slow  # the Woodbury solve's all-reduce; test_affordable_hessian mirrors a sketch
def test_mirrored_woodbury_fisher_equals_single_device(tmp_path):
    # m = 300 outputs > 256 and > the global batch of 8: solver="auto" picks
    # the Woodbury solve, which all-gathers the gradients of both replicas.
    apis, options = ["loss", "model"], ["--outputs", "300", "--batch", "8"]
    single, single_out = _train(tmp_path, "single", "fisher", apis, options=options)
    mirrored, mirrored_out = _train(tmp_path, "mirrored", "fisher", apis, options=options)
    single_log = _finish(single)
    mirrored_log = _finish(mirrored)
    assert _logged(single_log, "woodbury solves traced") > 0
    assert _logged(mirrored_log, "woodbury solves traced") > 0
    for api in apis:
        for a, b in zip(_weights(single_out, api), _weights(mirrored_out, api)):
            np.testing.assert_allclose(a, b, atol=1e-5)
        # Without the all-gather the weights differ by ~0.5 here.
        assert _logged(single_log, f"{api} largest weight change") > 0.05


def test_mirrored_adaptive_damping_equals_single_device(tmp_path):
    # ρ is formed from all-reduced sums, so both replicas (and the single
    # device) set the same λ every step; the ratio printed is the replicas'.
    apis, options = ["loss", "model"], ["--damping", "adaptive", "--steps", "4"]
    single, single_out = _train(tmp_path, "single", "hessian", apis, options=options)
    mirrored, mirrored_out = _train(tmp_path, "mirrored", "hessian", apis, options=options)
    single_log, mirrored_log = _finish(single), _finish(mirrored)
    for api in apis:
        ratio = _logged(single_log, f"{api} damping ratio")
        radius = _logged(single_log, f"{api} damping radius")
        assert ratio != pytest.approx(1e-2) or radius != pytest.approx(1.0)  # it adapted
        assert _logged(mirrored_log, f"{api} damping ratio") == pytest.approx(ratio, rel=1e-5)
        assert _logged(mirrored_log, f"{api} damping radius") == pytest.approx(radius, rel=1e-5)
        assert _logged(mirrored_log, f"{api} last damping") == pytest.approx(
            _logged(single_log, f"{api} last damping"), rel=1e-4)
        # λ falls towards 1e-6·κ here, where the solve amplifies the float32
        # rounding of the all-reduced sums (measured: 1.2e-5 on one weight).
        for a, b in zip(_weights(single_out, api), _weights(mirrored_out, api)):
            np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("curvature", ["hessian", pytest.param("fisher", marks=pytest.mark.slow)])
def test_multi_worker_mirrored_strategy_equals_single_device(tmp_path, curvature):
    # Each process trains a NewtonLossModel and a keras.Model compiled with
    # NewtonLoss, in turn (both driven by strategy.run(model.train_step)).
    apis = ["loss", "model"]
    ports = free_loopback_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(_train(tmp_path, "multiworker", curvature, apis,
                                env={"TF_CONFIG": json.dumps(config)}, tag=str(index)))
    single, single_out = _train(tmp_path, "single", curvature, apis)
    for process, _ in processes:
        _finish(process)
    single_log = _finish(single)
    for api in apis:
        assert _logged(single_log, f"{api} largest weight change") > 0.05
        for _, out in processes:
            for a, b in zip(_weights(single_out, api), _weights(out, api)):
                np.testing.assert_allclose(a, b, atol=1e-5)
