"""NeuralSort's overflow guard holds at XLA's default optimization level and at level 0.

At ``--xla_backend_optimization_level=0`` scores near the float32 limit
gave a NaN permutation: XLA recomputed the shifted logits in a fusion with
different rounding, and an ulp times the ~1e38 inverse temperature made
``exp`` overflow. The flag is read when TensorFlow starts, hence the subprocess.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = """
import numpy as np, tensorflow as tf
from keras_newton.sorting.neural_sort import neural_sort
x = tf.constant([[3e38, -3e38, 1e38, 0.0]])
s, p = tf.function(neural_sort, jit_compile=True)(x)
np.save({out!r}, np.concatenate([s.numpy().ravel(), p.numpy().ravel()]))
"""


@pytest.mark.parametrize("xla_flags", ["", "--xla_backend_optimization_level=0"],
                         ids=["default_level", "level_0"])
def test_neural_sort_near_float32_limit_under_xla(xla_flags, tmp_path):
    out = str(tmp_path / "result.npy")
    env = dict(os.environ, XLA_FLAGS=xla_flags, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", SCRIPT.format(out=out)], env=env, check=True,
                   timeout=600)
    result = np.load(out)
    sorted_scores, permutation = result[:4], result[4:].reshape(4, 4)
    assert np.all(np.isfinite(result))
    np.testing.assert_allclose(sorted_scores, [-3e38, 0.0, 1e38, 3e38], rtol=1e-6)
    # Distinct scores far apart: an exact permutation matrix.
    np.testing.assert_allclose(permutation, np.eye(4)[:, [1, 3, 2, 0]], atol=1e-6)
