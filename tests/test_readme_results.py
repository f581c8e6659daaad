"""The README quotes the committed result files, and every file it names exists.

The efficacy tables of the README are copied by hand from the ``*_summary.csv``
files the benchmark wrote under ``docs/``; these tests catch a number copied
wrong or a result file re-run without the README following.
"""

import csv
import pathlib
import re

import pytest

from keras_newton.bench.results import format_p_value

ROOT = pathlib.Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Summary files whose every row the README quotes (exact match, mean ± std in
# percent, and the Newton rows' Welch p).
QUOTED_SUMMARIES = [
    "docs/main_job/results_summary.csv",
    "docs/main_job/another_machine/results_summary.csv",
    "docs/main_job/ten_seeds/results_summary.csv",
    "docs/study/length/length_summary.csv",
    "docs/study/length_5seeds/length_summary.csv",
    "docs/study/length_10seeds/length_summary.csv",
    "docs/study/length_fisher/length_summary.csv",
    "docs/controls/lr_3e-3_ten_seeds/lr_runs_summary.csv",
]


def _rows(path: str) -> list[dict]:
    with open(ROOT / path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_docs_file_the_readme_names_exists():
    names = set(re.findall(r"docs/[\w./=-]*[\w/]", README))
    assert len(names) > 10
    missing = sorted(name for name in names if not (ROOT / name).exists())
    assert not missing, missing


@pytest.mark.parametrize("path", QUOTED_SUMMARIES)
def test_readme_quotes_every_row_of(path):
    rows = _rows(path)
    assert rows, path
    for row in rows:
        mean, std = float(row["exact_match_mean"]), float(row["exact_match_std"])
        quoted = f"{100 * mean:.2f} ± {100 * std:.2f}"
        assert quoted in README, (path, row["variant"], quoted)
        if row["newton"] != "none":
            p_value = format_p_value(float(row["exact_match_p_value"])).strip("*")
            assert p_value in README, (path, row["variant"], p_value)
