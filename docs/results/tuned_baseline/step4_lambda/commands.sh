#!/bin/bash
# Step 4b of the tuned-baseline plan: SoftSort's λ/√10 and λ·√10 at Adam 1e-2,
# Newton-Hessian's ten-seed best rate (λ = 1e-3 itself is step 3's runs).
set -e
run() { # sorter lr lambda
  keras-newton-bench grid --quick --task sort --methods sorter=$1 --newton hessian \
    --learning-rate $2 --damping $3 --seeds 0 1 2 --steps 2000 --verbose 0 \
    --output-dir bench_results/tuned_lambda/$1_lr$2_lambda$3
}
run soft_sort 0.01 3.16e-04
run soft_sort 0.01 3.16e-03
