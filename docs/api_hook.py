"""MkDocs hook: fill the API reference page with every module of `hpc_seaice`, found at build time.

The page lists no module by hand, so a module added, moved or renamed is documented from its
docstrings at the next build without anyone editing the page (mkdocstrings renders each `:::` line).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hpc_seaice"
MARKER = "<!-- api-modules -->"

# (heading, sub-package or module names at the package top, in the layer order of architecture.md)
GROUPS = [
    ("The notebook entry points", ["__init__"]),
    ("Ground layer", ["errors", "config", "fileio", "outputs", "command"]),
    ("Data", ["data"]),
    ("Models", ["models"]),
    ("Diffusion", ["diffusion"]),
    ("Runtime", ["runtime"]),
    ("Inference", ["inference"]),
    ("Training", ["train"]),
    ("Evaluation", ["evaluation"]),
    ("Cluster", ["cluster"]),
    ("Command line and demo", ["cli", "demo", "demo_report", "demo_compute"]),
]


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules(top: str) -> list[str]:
    """Dotted names under `hpc_seaice.<top>` (a module or a package with its sub-modules), sorted."""
    if top == "__init__":
        return ["hpc_seaice"]
    single = PACKAGE / f"{top}.py"
    if single.is_file():
        return [_dotted(single)]
    folder = PACKAGE / top
    if not folder.is_dir():
        return []
    files = [p for p in folder.rglob("*.py") if p.name != "__main__.py" and "__pycache__" not in p.parts]
    # a package's __init__ is listed only when it says something (most are empty)
    files = [p for p in files if p.name != "__init__.py" or p.read_text().strip()]
    return sorted({_dotted(p) for p in files})


def api_markdown() -> str:
    """The `:::` blocks of every module, under one heading per layer."""
    listed: set[str] = set()
    lines: list[str] = []
    for heading, tops in GROUPS:
        names = [m for top in tops for m in _modules(top)]
        if not names:
            continue
        lines += [f"## {heading}", ""]
        for name in names:
            listed.add(name)
            lines += [f"::: {name}", "    options:", "      heading_level: 3", ""]
    rest = sorted({_dotted(p) for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")} - listed)
    if rest:  # a new top-level module or package not in GROUPS still gets documented
        lines += ["## Other modules", ""]
        for name in rest:
            lines += [f"::: {name}", "    options:", "      heading_level: 3", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs' hook signature)
    if MARKER in markdown:
        return markdown.replace(MARKER, api_markdown())
    return markdown
