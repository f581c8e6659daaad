"""Benchmarks of the paper (Petersen et al., NeurIPS 2024) as a CLI and a library.

``keras-newton-bench grid --quick`` is the main job: NeuralSort and a
differentiable sorting network, n = 5, on the offline digits, baseline vs
Newton-Hessian vs Newton-Fisher over three seeds. See :mod:`.cli` for the
subcommands and flags, :mod:`.training` for resumable runs and model
selection, :mod:`.results` / :mod:`.plots` for the files written.

Importing this package does no TensorFlow work.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """Runs the command line (see :mod:`keras_newton.bench.cli`)."""
    from keras_newton.bench.cli import main as cli_main

    return cli_main(argv)
