"""The README stays short and its links resolve, the measured numbers the README and docs/ quote
are the ones in benchmarks/results/*.json, and the documentation site builds with --strict."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _render_numbers():
    spec = importlib.util.spec_from_file_location("render_numbers", ROOT / "docs" / "render_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_at_most_250_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines: move the detail into docs/"


def test_readme_links_resolve():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert local, "README.md links nothing in the repository"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links files that do not exist: {missing}"


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.name for p in (ROOT / "docs").glob("*.md")]
    missing = [name for name in pages if f": {name}" not in nav]
    assert not missing, f"docs pages missing from mkdocs.yml's nav: {missing}"


def test_quoted_numbers_match_the_benchmark_results():
    stale = _render_numbers().stale_blocks()
    assert not stale, (
        f"numbers blocks differ from benchmarks/results/*.json (run python docs/render_numbers.py): {stale}"
    )


def test_every_renderer_is_quoted_somewhere():
    rn = _render_numbers()
    quoted = {name for page in rn.pages(ROOT) for name in rn.OPEN.findall(page.read_text())}
    assert set(rn.RENDERERS) <= quoted, f"renderers no page quotes: {sorted(set(rn.RENDERERS) - quoted)}"
    assert {"headline_table", "decoder_headline"} <= set(rn.OPEN.findall(README.read_text()))


def test_a_changed_result_makes_the_check_fail(tmp_path):
    rn = _render_numbers()
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    speed = json.loads((results / "speed.json").read_text())
    speed["summary"]["ratios"]["training_throughput"] = 12.3
    (results / "speed.json").write_text(json.dumps(speed))
    stale = rn.stale_blocks(ROOT, results)
    assert "README.md: headline_table" in stale
    assert "docs/performance.md: summary_table" not in stale  # summary.json was not changed
    # and rendering writes the new value where the README quotes it
    copy = tmp_path / "repo"
    (copy / "docs").mkdir(parents=True)
    shutil.copy(README, copy / "README.md")
    rn.render_all(copy, results)
    assert "**12.3x**" in (copy / "README.md").read_text()


def test_an_unknown_or_unclosed_block_is_refused():
    rn = _render_numbers()
    res = rn.Results(ROOT / "benchmarks" / "results")
    with pytest.raises(SystemExit, match="no renderer knows"):
        rn.render_text("<!-- numbers:no_such_table -->\n<!-- /numbers:no_such_table -->\n", res, "page.md")
    with pytest.raises(SystemExit, match="without its closing marker"):
        rn.render_text("<!-- numbers:speed_table -->\ntext\n", res, "page.md")


def test_the_site_builds_strictly(tmp_path):
    """`make docs` in the test suite: a broken link, a page left out or an unknown API object fails."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert 'id="hpc_seaice.inference.api.open_run"' in api, "the API reference lacks hs.open_run"
    print(f"mkdocs build --strict: {time.perf_counter() - start:.1f} s")
