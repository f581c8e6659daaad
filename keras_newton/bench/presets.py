"""Presets: the paper's full-run defaults live in the task modules; these are
the ``--quick`` CPU presets and the main job (README command 1).

Full runs (no ``--quick``) use the paper's settings where it states them
(Petersen et al., 2024): sorting — 100 sets per batch, 100 000 steps,
evaluation every 1000 steps, model selection on validation exact match, and
Adam 1e-3, a choice of this library (the paper does not publish its optimizer
settings); Warcraft — batch 70, Adam 5e-4, 50 epochs, learning rate ×0.1
after epochs 30 and 40. Every value can be overridden on the command line.

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

# The main job's regime is the paper's n = 10 with 100 sets per batch, a
# small MLP scorer and a short budget, so that it runs in minutes on two
# cores; see STUDY_QUICK for the study these settings come from.
QUICK = {
    "sort": {"n": 10, "batch_size": 100, "steps": 2000, "eval_every": 500, "eval_sets": 500,
             "scorer": "mlp"},
    "path": {"batch_size": 8, "steps": 8, "eval_every": 4, "train_maps": 64,
             "eval_maps": 16, "samples": 3},
    "classify": {"batch_size": 100, "steps": 300, "eval_every": 50},
}

QUICK_SEEDS = (0, 1, 2)

# Processes sharing the runs of a quick grid or study (one per core of a
# 2-core CPU); --workers overrides.
QUICK_WORKERS = {"sort": 2}

# Methods of each task's grid when none are given (``grid --quick`` of the
# sorting task, the main job, uses QUICK_GRID_METHODS instead).
GRID_METHODS = {
    "sort": [{"sorter": "neural_sort"},
             {"sorter": "diff_sort", "relaxation": "cauchy"}],
    "path": [{"method": "relaxed", "loop": "for", "distance": "l1"},
             {"method": "perturbed"}],
    "classify": [{"model": "M1", "optimizer": "sgd"}],
}

# The main job (README command 1): NeuralSort and SoftSort, n = 10, baseline
# vs Newton-Hessian vs Newton-Fisher, and the Cauchy sorting network as the
# control (a relaxation the paper finds needs no rescue), five seeds each
# (Welch tests need them). Every variant trains at its own learning rate and
# λ, both selected on validation exact match in the main job's regime:
# - λ: the best of the study's sweep (2000 steps at Adam 1e-3, seeds 0 and 1,
#   λ = 1e-4 … 1; docs/study/sweep_best.json), made by
#     keras-newton-bench study --quick --parts sweep --steps 2000 \
#       --dampings 0.0001 0.001 0.01 0.1 1 --newton hessian fisher \
#       --methods sorter=neural_sort sorter=soft_sort \
#                 sorter=diff_sort,relaxation=cauchy,newton=fisher
#   and, for Newton-Hessian, the best of λ/√10, λ and λ·√10 at its selected
#   rate (NeuralSort keeps 1e-4; SoftSort's λ/√10 = 3.16e-4 is best at 1e-2;
#   docs/results/tuned_baseline/step2_lambda, step4_lambda).
# - the learning rate: the best mean validation exact match over Adam 1e-3,
#   3e-3, 1e-2, 3e-2, 1e-1, each row from the study with the most seeds for it:
#   baselines and Newton-Hessian of both sorters from ten seeds
#   (docs/results/tuned_baseline/step3_ten_seeds/lr_control.json), the
#   Fisher rows and the control from three
#   (docs/results/tuned_baseline/step4a_locate/lr_control.json). Every row's
#   best rate is 1e-2, inside the grid; tests/bench/test_bench_presets.py
#   checks that these entries are that selection.
QUICK_GRID_METHODS = {
    "sort": [
        {"sorter": "neural_sort", "newton": ["none", "hessian", "fisher"],
         "seeds": [0, 1, 2, 3, 4], "dampings": {"hessian": 0.0001, "fisher": 0.01},
         "learning_rates": {"none": 0.01, "hessian": 0.01, "fisher": 0.01}},
        {"sorter": "soft_sort", "newton": ["none", "hessian", "fisher"],
         "seeds": [0, 1, 2, 3, 4], "dampings": {"hessian": 0.000316, "fisher": 0.001},
         "learning_rates": {"none": 0.01, "hessian": 0.01, "fisher": 0.01}},
        # Fisher, not Hessian, for the control: the Hessian through the 10-layer
        # network costs ~4.7x a plain step with this small scorer.
        {"sorter": "diff_sort", "relaxation": "cauchy", "newton": ["none", "fisher"],
         "seeds": [0, 1, 2, 3, 4], "dampings": {"fisher": 0.001},
         "learning_rates": {"none": 0.01, "fisher": 0.01}},
    ],
}

# The efficacy study (keras-newton-bench study): the paper's hard
# relaxations at n = 10 and the Cauchy network as the control.
STUDY_METHODS = [
    {"sorter": "neural_sort"},
    {"sorter": "soft_sort"},
    {"sorter": "diff_sort", "relaxation": "logistic", "network": "odd_even"},
    {"sorter": "diff_sort", "relaxation": "cauchy", "network": "odd_even"},
]
STUDY_NEWTON = ("hessian", "fisher", "elementwise_hessian")
STUDY_QUICK = dict(QUICK["sort"])
STUDY_QUICK_SEEDS = (0, 1)
STUDY_QUICK_BUDGETS = (500, 1500, 5000, 15000)
# The learning-rate control (study --parts lr): around the full runs' Adam 1e-3.
LR_CONTROL_LEARNING_RATES = (3e-4, 1e-3, 3e-3)
# Issue 14's controls, as run for the README (docs/controls/), sized for 2
# cores (two workers): n = 10, 2000 steps, seeds 0 1 2, NeuralSort and
# SoftSort, Newton-Hessian and Newton-Fisher at the sweep's best λ
# (docs/study/sweep_best.json).
# 1. The learning rate: baseline vs Newton at every rate (72 runs; 1e-2 was
#    added after 3e-3 came out best for every row), into
#    bench_results/controls/lr/ (lr_control.md / .csv / .json / .png):
#   keras-newton-bench study --quick --parts lr --learning-rates 3e-4 1e-3 3e-3 1e-2 \
#     --seeds 0 1 2 --steps 2000 --newton hessian fisher \
#     --output-dir bench_results/controls \
#     --methods sorter=neural_sort,dampings=hessian:0.0001+fisher:0.01 \
#               sorter=soft_sort,dampings=hessian:0.001+fisher:0.001
# 2. The ranking loss's form: both sorters under objective=positional_ce at
#    Adam 1e-3 (18 runs), compared with the BCE rows of (1) at
#    1e-3, which have the same configuration but the objective:
#   keras-newton-bench grid --quick --task sort --steps 2000 --seeds 0 1 2 \
#     --newton none hessian fisher --output-dir bench_results/controls_objective \
#     --methods sorter=neural_sort,objective=positional_ce,dampings=hessian:0.0001+fisher:0.01 \
#               sorter=soft_sort,objective=positional_ce,dampings=hessian:0.001+fisher:0.001

GRID_NEWTON = {
    "sort": ("none", "hessian", "fisher"),
    "path": ("none", "fisher"),
    "classify": ("none", "elementwise_hessian", "hessian", "fisher"),
}
