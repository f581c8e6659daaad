"""Benchmarks of the paper (Petersen et al., NeurIPS 2024) as a CLI and a library.

``keras-newton-bench grid --quick`` is the main job: NeuralSort and SoftSort
at the paper's n = 10 and 100 sets per batch on the offline digits, baseline
vs Newton-Hessian vs Newton-Fisher over five seeds, and the Cauchy sorting
network as the control; ``keras-newton-bench study`` is the efficacy study
(:mod:`.study`) the main job's dampings come from. See :mod:`.cli` for the
subcommands and flags, :mod:`.training` for resumable runs and model
selection, :mod:`.results` / :mod:`.plots` for the files written.

Importing this package does no TensorFlow work.
"""

__all__ = ["main"]


def main(argv=None) -> int:
    """Runs the command line (see :mod:`keras_newton.bench.cli`).

    The numerics are made portable (:mod:`.portable_numerics`) before
    TensorFlow is imported, unless the command line says ``--native-numerics``.
    """
    import sys

    from keras_newton.bench import portable_numerics

    portable_numerics.configure_from_argv(sys.argv[1:] if argv is None else argv)
    from keras_newton.bench.cli import main as cli_main

    return cli_main(argv)
