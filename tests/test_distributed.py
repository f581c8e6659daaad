"""tf.distribute: the batch curvature is the statistic of the global batch.

Each configuration trains in a fresh process (logical devices and TF_CONFIG
must be set before TensorFlow starts) and the final weights are compared with
single-device training on the same global batch.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_training.py")


def _train(tmp_path, strategy, curvature, api, env=None, tag=""):
    out = tmp_path / f"{strategy}-{curvature}-{api}{tag}.npz"
    command = [sys.executable, SCRIPT, "--strategy", strategy, "--curvature", curvature,
               "--api", api, "--out", str(out)]
    return subprocess.Popen(command, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT), out


def _weights(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _finish(process):
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output.decode()[-3000:]
    return output.decode()


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.parametrize("api", ["loss", "model"])
@pytest.mark.parametrize("curvature", ["hessian", "fisher"])
def test_mirrored_strategy_equals_single_device(tmp_path, curvature, api):
    single, single_out = _train(tmp_path, "single", curvature, api)
    mirrored, mirrored_out = _train(tmp_path, "mirrored", curvature, api)
    single_log = _finish(single)
    _finish(mirrored)
    for a, b in zip(_weights(single_out), _weights(mirrored_out)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # The run must have moved the weights, or the comparison proves nothing
    # (without the all-reduce the weights differ by ~0.2 here).
    assert float(single_log.split("largest weight change:")[1]) > 0.05


@pytest.mark.parametrize("curvature", ["hessian", "fisher"])
def test_multi_worker_mirrored_strategy_equals_single_device(tmp_path, curvature):
    ports = _free_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(_train(tmp_path, "multiworker", curvature, "model",
                                env={"TF_CONFIG": json.dumps(config)}, tag=str(index)))
    single, single_out = _train(tmp_path, "single", curvature, "model")
    for process, _ in processes:
        _finish(process)
    _finish(single)
    for _, out in processes:
        for a, b in zip(_weights(single_out), _weights(out)):
            np.testing.assert_allclose(a, b, atol=1e-5)
