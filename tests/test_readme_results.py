"""The README and the results pages quote the committed result files, and every file they name exists.

The efficacy tables of the README's headline and of the documentation's
results pages (``docs/results/*.md``) are copied by hand from the
``*_summary.csv`` files the benchmark wrote under ``docs/``; these tests catch
a number copied wrong or a result file re-run without the pages following.
"""

import csv
import pathlib
import re

import pytest

from keras_newton.bench.results import format_p_value

ROOT = pathlib.Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _page(name: str) -> str:
    return (ROOT / "docs" / "results" / name).read_text(encoding="utf-8")


# Summary files whose every row a text quotes (exact match, mean ± std in
# percent, and the Newton rows' Welch p), with the text that quotes them.
QUOTED_SUMMARIES = [
    ("docs/main_job/results_summary.csv", "main_job.md"),
    ("docs/main_job/adam_1e-3/results_summary.csv", "main_job.md"),
    ("docs/main_job/native_numerics/results_summary.csv", "main_job.md"),
    ("docs/main_job/another_machine/results_summary.csv", "main_job.md"),
    ("docs/main_job/ten_seeds/results_summary.csv", "main_job.md"),
    ("docs/controls/lr_3e-3_ten_seeds/lr_runs_summary.csv", "main_job.md"),
    ("docs/study/length/length_summary.csv", "study.md"),
    ("docs/study/length_5seeds/length_summary.csv", "study.md"),
    ("docs/study/length_10seeds/length_summary.csv", "study.md"),
    ("docs/study/length_fisher/length_summary.csv", "study.md"),
    # The README's headline table.
    ("docs/main_job/results_summary.csv", "README.md"),
]

# Every text that names committed result files.
TEXTS = {"README.md": README,
         **{f"docs/{p.relative_to(ROOT / 'docs')}": p.read_text(encoding="utf-8")
            for p in sorted((ROOT / "docs").glob("*.md"))},
         **{f"docs/{p.relative_to(ROOT / 'docs')}": p.read_text(encoding="utf-8")
            for sub in ("guide", "algorithms", "results")
            for p in sorted((ROOT / "docs" / sub).glob("*.md"))}}


def _rows(path: str) -> list[dict]:
    with open(ROOT / path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_docs_file_the_readme_and_the_pages_name_exists():
    names = {(text_name, name) for text_name, text in TEXTS.items()
             for name in re.findall(r"docs/[\w./=-]*[\w/]", text)}
    assert len(names) > 30
    missing = sorted((text_name, name) for text_name, name in names
                     if not (ROOT / name).exists())
    assert not missing, missing


@pytest.mark.parametrize("path,text_name", QUOTED_SUMMARIES)
def test_the_text_quotes_every_row_of(path, text_name):
    text = README if text_name == "README.md" else _page(text_name)
    rows = _rows(path)
    assert rows, path
    for row in rows:
        mean, std = float(row["exact_match_mean"]), float(row["exact_match_std"])
        quoted = f"{100 * mean:.2f} ± {100 * std:.2f}"
        assert quoted in text, (path, text_name, row["variant"], quoted)
        if row["newton"] != "none":
            p_value = format_p_value(float(row["exact_match_p_value"])).strip("*")
            assert p_value in text, (path, text_name, row["variant"], p_value)


def test_the_readme_has_one_headline_table_and_one_figure():
    headline = README[README.index("## Headline result"):README.index("## Documentation")]
    tables = re.findall(r"^\|---", headline, re.MULTILINE)
    figures = re.findall(r"!\[[^\]]*\]\((docs/[^)]+\.png)\)", headline)
    assert len(tables) == 1 and len(figures) == 1, (tables, figures)
    assert (ROOT / figures[0]).exists()
