"""Tuned-against-tuned comparison of the tuned-baseline study.

Reads ``lr_runs.json`` of ``keras-newton-bench study --parts lr`` and prints,
per sorter, Newton-Hessian at its own validation-best learning rate against
the baseline at its own validation-best rate, then the same at every equal
rate: Δ test exact match, Δ test rank accuracy (points) and two-sided Welch p.

Usage: ``python docs/results/tuned_baseline/compare.py <folder>/lr/lr_runs.json``
"""

import collections
import json
import sys

import numpy as np
from scipy import stats


def main(path):
    runs = json.load(open(path, encoding="utf-8"))["runs"]
    groups = collections.defaultdict(list)
    for run in runs:
        sorter = run["method"].split(" @ ")[0]
        groups[(sorter, run["newton"], run["learning_rate"])].append(run)

    def values(key, metric):
        return np.array([100 * r[metric] for r in sorted(groups[key], key=lambda r: r["seed"])])

    def best_rate(sorter, newton):
        rates = sorted(lr for s, n, lr in groups if (s, n) == (sorter, newton))
        return max(rates, key=lambda lr: values((sorter, newton, lr), "val_exact_match").mean())

    def line(label, newton_key, base_key):
        cells = [label]
        for metric in ("exact_match", "rank_accuracy"):
            a, b = values(newton_key, metric), values(base_key, metric)
            p = stats.ttest_ind(a, b, equal_var=False).pvalue
            cells += [f"{a.mean():.2f} ± {a.std(ddof=1):.2f} / {b.mean():.2f} ± {b.std(ddof=1):.2f}",
                      f"{a.mean() - b.mean():+.2f}", f"{p:.3g}"]
        cells.append(f"{len(groups[newton_key])}/{len(groups[base_key])}")
        return "| " + " | ".join(cells) + " |"

    print("| comparison | exact match, Newton / baseline (%) | Δ | p | rank accuracy, "
          "Newton / baseline (%) | Δ | p | seeds |")
    print("|---|---|---|---|---|---|---|---|")
    for sorter in sorted({s for s, _, _ in groups}):
        newton_lr, base_lr = best_rate(sorter, "hessian"), best_rate(sorter, "none")
        print(line(f"{sorter}: Newton-Hessian at {newton_lr:g} vs baseline at {base_lr:g} "
                   "(each its own best)", (sorter, "hessian", newton_lr),
                   (sorter, "none", base_lr)))
        for lr in sorted(lr for s, n, lr in groups if (s, n) == (sorter, "none")):
            print(line(f"{sorter}: both at {lr:g}", (sorter, "hessian", lr), (sorter, "none", lr)))


if __name__ == "__main__":
    main(sys.argv[1])
