"""Every ```python block of the README (and of the getting-started page) runs as written.

Each block is run in a fresh interpreter from the repository root, with this
checkout first on the path, so that a snippet that depends on an earlier one,
on a file that is not there, or on an API that changed fails here.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[1]
TEXTS = ["README.md", "docs/getting_started.md"]


def _python_blocks(name: str) -> list[str]:
    text = (ROOT / name).read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def test_the_readme_has_python_snippets():
    assert len(_python_blocks("README.md")) >= 2


# Runs the blocks of one text one after another in one interpreter (TensorFlow
# loads once), each in a fresh namespace, so no block can lean on another.
_RUNNER = """
import sys, traceback
blocks = {blocks!r}
for index, block in enumerate(blocks):
    try:
        exec(compile(block, f"<block {{index}}>", "exec"), {{"__name__": "__main__"}})
    except BaseException:
        traceback.print_exc()
        print(f"BLOCK {{index}} FAILED", file=sys.stderr)
        sys.exit(1)
"""


@pytest.mark.parametrize("name", TEXTS)
def test_every_python_block_runs(name):
    blocks = _python_blocks(name)
    assert blocks, name
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-c", _RUNNER.format(blocks=blocks)],
                            capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 0, f"{name}:\n{result.stderr[-3000:]}"
