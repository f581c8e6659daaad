"""The documentation builds in strict mode, and a broken reference fails the build.

``mkdocs build --strict`` turns every warning into an error: a page link that
points nowhere, an anchor that does not exist, a ``::: identifier`` or an API
cross-reference that no longer resolves, a docstring griffe cannot parse. The
build is offline (mkdocstrings reads the sources with griffe; nothing is
downloaded) and is written into a temporary folder.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest
import yaml

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")

ROOT = pathlib.Path(__file__).parents[1]
CONFIG = ROOT / "mkdocs.yml"


def _build(config: pathlib.Path, site: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_the_documentation_builds_strictly(tmp_path):
    started = time.perf_counter()
    result = _build(CONFIG, tmp_path / "site")
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-5000:]
    # Every page of the navigation was written, the API pages with content.
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from (pages(value) if isinstance(value, list) else [value])

    written = [tmp_path / "site" / page.replace(".md", "") / "index.html"
               if not page.endswith("index.md") else
               tmp_path / "site" / page.replace(".md", ".html")
               for page in pages(config["nav"])]
    missing = [str(path) for path in written if not path.exists()]
    assert not missing, missing
    newton = (tmp_path / "site" / "api" / "newton" / "index.html").read_text(encoding="utf-8")
    for name in ("NewtonLoss", "NewtonLossModel", "NewtonStep", "newton_target"):
        assert f'id="keras_newton.newton.{name}"' in newton, name
    print(f"mkdocs build --strict: {seconds:.1f} s")


def _broken_copy(tmp_path: pathlib.Path, page: str) -> pathlib.Path:
    """A copy of the site's configuration whose only page is ``page``."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(page, encoding="utf-8")
    config["docs_dir"] = str(docs)
    config["nav"] = [{"Home": "index.md"}]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT)]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("page,message", [
    ("# API\n\n::: keras_newton.no_such_name\n", "keras_newton.no_such_name"),
    ("# API\n\n::: keras_newton.newton.NewtonStep\n\n"
     "See [the step][keras_newton.newton.NoSuchStep].\n", "keras_newton.newton.NoSuchStep"),
], ids=["missing-object", "missing-cross-reference"])
def test_a_broken_docstring_reference_fails_the_build(tmp_path, page, message):
    result = _build(_broken_copy(tmp_path, page), tmp_path / "site")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]


def test_the_broken_copy_builds_when_the_reference_is_right(tmp_path):
    # The failure above is the reference's, not the copied configuration's.
    page = "# API\n\n::: keras_newton.newton.NewtonStep\n\nSee [the step][keras_newton.newton.NewtonStep].\n"
    result = _build(_broken_copy(tmp_path, page), tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
