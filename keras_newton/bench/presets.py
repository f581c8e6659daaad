"""Presets: the paper's full-run defaults live in the task modules; these are
the ``--quick`` CPU presets and the main job (README command 1).

Full runs (no ``--quick``) use the paper's settings (Petersen et al., 2024):
sorting — Adam 1e-3, 100 sets per batch, 100 000 steps, evaluation every 1000
steps, model selection on validation exact match; Warcraft — batch 70,
Adam 5e-4, 50 epochs, learning rate ×0.1 after epochs 30 and 40. Every value
can be overridden on the command line.

``--quick`` presets shrink steps, batches and evaluation sets so that a run
finishes in seconds to a minute on a laptop CPU; they show the trend, not the
paper's numbers.
"""

from __future__ import annotations

# Tikhonov λ per Newton variant and task (per-sample scale, see DESIGN §2).
DAMPINGS = {
    "sort": {"hessian": 0.01, "fisher": 0.001, "elementwise_hessian": 0.01},
    "path": {"hessian": 0.1, "fisher": 0.01, "elementwise_hessian": 0.1},
    "classify": {"hessian": 0.01, "fisher": 0.01, "elementwise_hessian": 0.01},
}

QUICK = {
    "sort": {"batch_size": 16, "steps": 250, "eval_every": 50, "eval_sets": 250},
    "path": {"batch_size": 8, "steps": 8, "eval_every": 4, "train_maps": 64,
             "eval_maps": 16, "samples": 3},
    "classify": {"batch_size": 100, "steps": 300, "eval_every": 50},
}

QUICK_SEEDS = (0, 1, 2)

# Methods of each task's grid when none are given (``grid --quick`` of the
# sorting task is the main job: NeuralSort and a sorting network, n = 5).
GRID_METHODS = {
    "sort": [{"sorter": "neural_sort"},
             {"sorter": "diff_sort", "relaxation": "cauchy"}],
    "path": [{"method": "relaxed", "loop": "for", "distance": "l1"},
             {"method": "perturbed"}],
    "classify": [{"model": "M1", "optimizer": "sgd"}],
}

GRID_NEWTON = {
    "sort": ("none", "hessian", "fisher"),
    "path": ("none", "fisher"),
    "classify": ("none", "elementwise_hessian", "hessian", "fisher"),
}
