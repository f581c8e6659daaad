"""The ```python blocks of the distribution guide run as written.

A block preceded by ``<!-- snippet not run by the tests: why -->`` is not run
(the ``TF_CONFIG`` of example hosts, the TPU). The other two run from the
repository root with this checkout first on the path, each in a fresh
namespace: the multi-worker block under a loopback ``TF_CONFIG`` set by the
test, with its ``checkpoint_dir`` replaced by a temporary folder (the only
change to its text), as a one-worker cluster followed by the one-machine
block in the same interpreter in the default run, and as two workers with
``-m slow``.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
from conftest import free_loopback_ports

ROOT = pathlib.Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "guide" / "distributed.md"
SKIP = "<!-- snippet not run by the tests:"
CHECKPOINT_DIR = '"/shared/run1/checkpoints"'


def _blocks():
    """(text, run) of every ```python block, ``run`` False where marked."""
    text = GUIDE.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        before = text[:match.start()].rstrip().splitlines()[-1]
        found.append((match.group(1), not before.startswith(SKIP)))
    return found


def _run(code, env=None, cwd=ROOT):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(process):
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-4000:]
    return output


def _multi_worker_block():
    blocks = [code for code, run in _blocks() if run and "MultiWorkerMirroredStrategy()" in code]
    assert len(blocks) == 1
    assert blocks[0].count(CHECKPOINT_DIR) == 1
    return blocks[0]


def _worker_jobs(tmp_path, workers, after=None):
    addresses = [f"127.0.0.1:{port}" for port in free_loopback_ports(workers)]
    code = _multi_worker_block().replace(CHECKPOINT_DIR, repr(str(tmp_path / "ckpt")))
    code += "\nprint('epochs trained:', history.epoch)\n"
    code = f"exec({code!r}, {{'__name__': '__main__'}})\n"
    if after is not None:
        code += f"exec({after!r}, {{'__name__': '__main__'}})\nprint('one-machine block ran')\n"
    return [_run(code, {"TF_CONFIG": json.dumps({
        "cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})})
        for index in range(workers)]


def test_the_guide_runs_every_block_but_the_hosts_and_the_tpu():
    skipped = [code for code, run in _blocks() if not run]
    assert len(skipped) == 2
    assert "TF_CONFIG" in skipped[0] and "TPUStrategy" in skipped[1]
    assert len(_blocks()) == 4


def test_the_one_machine_and_the_multi_worker_blocks_run(tmp_path):
    single = [code for code, run in _blocks() if run and "tf.distribute.MirroredStrategy()" in code]
    assert len(single) == 1
    # One interpreter (one TensorFlow start): the multi-worker block first, as
    # a one-worker cluster (the strategy must come before other TensorFlow
    # work), then the one-machine block, each in a fresh namespace.
    (worker,) = _worker_jobs(tmp_path, 1, after=single[0])
    output = _finish(worker)
    assert "epochs trained: [0, 1, 2]" in output
    assert "one-machine block ran" in output
    assert (tmp_path / "ckpt" / "checkpoint").exists()


@pytest.mark.slow
def test_the_multi_worker_block_runs_on_two_workers(tmp_path):
    outputs = [_finish(p) for p in _worker_jobs(tmp_path, 2)]
    for output in outputs:
        assert "epochs trained: [0, 1, 2]" in output
    assert (tmp_path / "ckpt" / "checkpoint").exists()
