"""λ check of the tuned-baseline study: Newton-Hessian's λ at its selected rate.

Reads the ``record.json`` of each run folder given (one folder per λ, holding
``seed<k>/record.json``), and writes, as JSON on standard output, the mean
validation and test exact match per λ and the λ with the best mean validation
exact match, which the plan keeps.

Usage::

    python docs/results/tuned_baseline/lambda_check.py SORTER RATE FOLDER [FOLDER ...]
"""

import json
import os
import sys

import numpy as np


def main(sorter, rate, folders):
    candidates = []
    for folder in folders:
        records = [json.load(open(os.path.join(folder, name, "record.json"), encoding="utf-8"))
                   for name in sorted(os.listdir(folder)) if name.startswith("seed")]
        for record in records:
            assert record["config"]["sorter"] == sorter, folder
            assert record["config"]["learning_rate"] == rate, folder
        assert len({r["damping"] for r in records}) == 1, folder
        validation = 100 * np.array([r["val_exact_match"] for r in records])
        test = 100 * np.array([r["exact_match"] for r in records])
        candidates.append({"damping": records[0]["damping"],
                           "seeds": sorted(r["seed"] for r in records),
                           "val_exact_match": [validation.mean(), validation.std(ddof=1)],
                           "exact_match": [test.mean(), test.std(ddof=1)]})
    best = max(candidates, key=lambda c: c["val_exact_match"][0])
    json.dump({"sorter": sorter, "newton": "hessian", "learning_rate": rate,
               "selection": "best mean validation exact_match",
               "candidates": sorted(candidates, key=lambda c: c["damping"]),
               "selected_damping": best["damping"]}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3:])
