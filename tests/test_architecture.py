"""The tree reads like the pipeline: no import runs from a lower layer up to a higher one, and
no module grows unnoticed (no file over 600 lines: a per-concept review, not a size cut)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hpc_seaice"
MAX_LINES = 600

# Bottom to top; a module may import from its own layer and the layers below it.
LAYERS = [
    {"errors", "config", "fileio", "filelock", "outputs", "cli_args", "command", "__version__"},
    {"data"},
    {"models", "diffusion"},
    {"runtime"},
    {"inference"},
    {"train", "evaluation"},
    {"cluster"},
    {"cli", "demo", "demo_compute", "demo_report", "__main__"},
]


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"hpc_seaice.{top} is in no layer: add it to LAYERS")


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hpc_seaice."):
            found.add(node.module.removeprefix("hpc_seaice."))
        elif isinstance(node, ast.ImportFrom) and node.module == "hpc_seaice":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("hpc_seaice.") for a in node.names if a.name.startswith("hpc_seaice."))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_from_its_own_layer_or_below(path):
    module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    upward = [name for name in _imports(path) if _layer(name) > _layer(module)]
    assert not upward, f"hpc_seaice.{module} imports from a higher layer: {upward}"


def test_no_file_over_the_line_limit():
    files = list(PACKAGE.rglob("*.py")) + list((ROOT / "benchmarks").rglob("*.py"))
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them along their seams): {long}"


def test_the_layer_check_can_fail(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from hpc_seaice.train.trainer import run_training\n")
    assert any(_layer(name) > _layer("data") for name in _imports(probe))


def test_nothing_cites_notes_outside_the_repository():
    # spelled in pieces, so this file does not cite them itself
    needles = ("../" + "shared", "PAPER" + "_NOTES", "DESIGN" + " section", "DESIGN" + " §")
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "docs").rglob("*.md")]
    files += [ROOT / "README.md", *(ROOT / "configs").rglob("*.yaml"), *(ROOT / "launch").rglob("*")]
    citing = [str(p.relative_to(ROOT)) for p in files if p.is_file() and any(n in p.read_text() for n in needles)]
    assert not citing, f"these cite notes that are not in the repository: {citing}"
