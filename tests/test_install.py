"""The install recipe and setup.py agree, this environment has every requirement installed, and an
installed (not editable) copy finds its package data."""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def installed_version(target: Path) -> str:
    """The version the installed copy declares (its dist-info folder's name)."""
    (info,) = target.glob("hpc_seaice-*.dist-info")
    return info.name.removeprefix("hpc_seaice-").removesuffix(".dist-info")


def test_a_non_editable_install_loads_the_presets(tmp_path: Path) -> None:
    """An installed copy (no ``-e``) carries its package data (the network presets and the coastline)
    and its console script runs.

    The source is copied first so that the build's own files (``build/``, ``*.egg-info``) land in
    the temporary folder, not in the repository.
    """
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "setup.py", source)
    shutil.copytree(ROOT / "hpc_seaice", source / "hpc_seaice", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    probe = (
        "import hpc_seaice, hpc_seaice.config as c, hpc_seaice.data.geo.coastline as g\n"
        "print(hpc_seaice.__file__)\n"
        "print(','.join(c.preset_names()))\n"
        "cfg = c.config_from_dict({'stage': 'diffusion', 'unet': {'preset': 'paper-data'}})\n"
        "print(cfg.unet.base_channels, g.COASTLINE_FILE.is_file())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    where, names, checks = out.stdout.splitlines()
    assert Path(where).is_relative_to(target), f"imported {where}, not the installed copy"
    shipped = sorted(p.stem for p in (ROOT / "hpc_seaice" / "presets").glob("*.yaml"))
    assert names.split(",") == shipped
    expected = yaml.safe_load((ROOT / "hpc_seaice" / "presets" / "paper-data.yaml").read_text())["base_channels"]
    assert checks == f"{expected} True"
    # the console script (entry point hpc_seaice.cli:main) of the installed copy
    script = subprocess.run(
        [str(target / "bin" / "hpc-seaice"), "--version"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert script.returncode == 0 and script.stdout.strip() == f"hpc-seaice {installed_version(target)}", script
