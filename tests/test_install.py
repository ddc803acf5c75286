"""The install recipe and setup.py agree, and this environment has every requirement installed."""

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setup_requirements() -> list[str]:
    """Distribution names in setup.py's install_requires and the `dev` extra."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    wanted = ("install_requires", "extras_require")
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in wanted}
    specs = kwargs["install_requires"] + kwargs["extras_require"].get("dev", [])
    return [re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0] for spec in specs]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _makefile_pip_names() -> set[str]:
    """Packages named by the Makefile's pinned pip command (the one with torch==2.13.0)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if "pip install" in ln and "torch==" in ln)
    words = line.split("pip install", 1)[1].split()
    return {_normalise(w.split("==")[0]) for w in words if not w.startswith("-")}


def test_makefile_names_every_setup_requirement() -> None:
    missing = [r for r in _setup_requirements() if _normalise(r) not in _makefile_pip_names()]
    assert not missing, f"Makefile's pinned pip command lacks {missing} (the package is installed with --no-deps)"


@pytest.mark.parametrize("requirement", _setup_requirements())
def test_requirement_is_installed(requirement: str) -> None:
    try:
        importlib.metadata.distribution(requirement)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{requirement} (named in setup.py) is not installed: run `make install`")
