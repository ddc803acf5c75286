"""The tree reads like the pipeline: no import runs from a lower layer up to a higher one, the
modules import one another without a cycle, and no module grows unnoticed (no file over 600
lines: a per-concept review, not a size cut).

Every import counts, wherever it is written: at module level, inside a function (the commands
import the library when they run, to keep ``--help`` fast), and as a string naming a module of the
package (``importlib.import_module("hpc_seaice.x")``, a ``"hpc_seaice.x:function"`` entry point, a
``-m hpc_seaice.x`` argument). An import whose module is computed at run time cannot be read, so
each one is listed in ``COMPUTED_IMPORTS`` with the reason it is safe.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hpc_seaice"
MAX_LINES = 600

# Bottom to top; a module may import from its own layer and the layers below it.
LAYERS = [
    {"errors", "config", "fileio", "filelock", "outputs", "command", "__version__"},
    {"data"},
    {"models", "diffusion"},
    {"runtime"},
    {"inference"},
    {"train", "evaluation"},
    {"cluster"},
    {"cli", "__main__", "demo", "demo_compute", "demo_report"},
]
# Parts of one layer that stand side by side: neither imports the other.
SIDE_BY_SIDE = [("train", "evaluation"), ("models", "diffusion"), ("cli", "demo")]
# Modules that import a module named at run time, and why that hides no dependency.
COMPUTED_IMPORTS = {
    # TrainingJob resolves its "module:function" entry; the package's own entry is the string
    # DEFAULT_ENTRY (read below as an import of hpc_seaice.train.trainer), other entries are the
    # benchmarks' wrappers outside the package.
    "cluster.job",
}

# A string constant that is nothing but a module of the package, optionally with ":function".
MODULE_STRING = re.compile(r"hpc_seaice(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_]\w*)?")
IMPORT_CALLS = {"import_module", "__import__"}


def _module_name(path: Path) -> str:
    """``hpc_seaice/data/format/manifest.py`` -> ``data.format.manifest``; a package's ``__init__``
    is the package (``data.format``), the package's own ``__init__`` is ``""``."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str = "", is_package: bool = False) -> set[str]:
    """Every name under ``hpc_seaice`` that ``source`` imports, without the ``hpc_seaice.`` prefix.

    ``from hpc_seaice.a import b`` gives ``a.b`` (a module or a name in ``a``; :func:`resolve`
    tells them apart); ``from hpc_seaice import __version__`` gives ``__version__``. ``module``
    (dotted, without the prefix) resolves relative imports.
    """
    found: set[str] = set()
    here = module.split(".") if module else []
    package = here if is_package else here[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                full = ["hpc_seaice", *base, *([node.module] if node.module else [])]
            else:
                full = (node.module or "").split(".")
            if full[0] != "hpc_seaice":
                continue
            prefix = ".".join(full[1:])
            found.update(f"{prefix}.{a.name}" if prefix else a.name for a in node.names if a.name != "*")
            if prefix:
                found.add(prefix)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("hpc_seaice.") for a in node.names if a.name.startswith("hpc_seaice."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.fullmatch(node.value):
            found.add(node.value.split(":")[0].removeprefix("hpc_seaice."))
    return found


def computed_imports(source: str) -> list[int]:
    """Lines of ``importlib.import_module(x)`` / ``__import__(x)`` calls whose ``x`` is not a literal."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in IMPORT_CALLS and not isinstance(node.args[0], ast.Constant):
                lines.append(node.lineno)
    return lines


def _layer(name: str) -> int:
    top = name.split(".")[0]
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"hpc_seaice.{top} is in no layer: add it to LAYERS")


SOURCES = {p: p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = {_module_name(p): (p, src) for p, src in SOURCES.items()}


def resolve(name: str, modules: Iterable[str]) -> str:
    """The module that importing ``name`` runs: the longest prefix of it that is a module."""
    known = set(modules)
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def import_graph(modules: dict[str, tuple[Path, str]]) -> dict[str, set[str]]:
    """Module -> the modules it imports (explicit imports only: importing ``a.b`` also runs the
    package ``a``'s ``__init__``, but a package importing its own modules is no cycle)."""
    graph = {}
    for name, (path, source) in modules.items():
        targets = {resolve(n, modules) for n in imported_names(source, name, path.name == "__init__.py")}
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or ``[]`` if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


LAYERED = {name: item for name, item in MODULES.items() if name}  # the package's __init__: the hs facade


@pytest.mark.parametrize("name", sorted(LAYERED), ids=lambda n: n or "__init__")
def test_imports_only_from_its_own_layer_or_below(name):
    path, source = LAYERED[name]
    names = imported_names(source, name, path.name == "__init__.py")
    upward = sorted(n for n in names if _layer(n) > _layer(name))
    assert not upward, f"hpc_seaice.{name} imports from a higher layer: {upward}"


@pytest.mark.parametrize("pair", SIDE_BY_SIDE, ids="-".join)
def test_side_by_side_parts_do_not_import_each_other(pair):
    a, b = pair
    assert _layer(a) == _layer(b), f"{a} and {b} are meant to be one layer"
    crossing = [
        f"hpc_seaice.{name} -> {n}"
        for name, (path, source) in LAYERED.items()
        for mine, other in ((a, b), (b, a))
        if name.split(".")[0] == mine
        for n in imported_names(source, name, path.name == "__init__.py")
        if n.split(".")[0] == other
    ]
    assert not crossing, f"{a} and {b} stand side by side, yet: {crossing}"


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(import_graph(MODULES))
    assert not cycle, "import cycle: " + " -> ".join(f"hpc_seaice.{n}" if n else "hpc_seaice" for n in cycle)


def test_every_import_is_readable():
    computed = {name for name, (_, source) in MODULES.items() if computed_imports(source)}
    assert computed == COMPUTED_IMPORTS, (
        f"imports of a module computed at run time (the layer check cannot read them): {sorted(computed)}; "
        "name the module in a string literal, or add it to COMPUTED_IMPORTS with the reason"
    )


def test_the_layer_check_can_fail():
    probe = "from hpc_seaice.train.trainer import run_training\n"
    assert any(_layer(name) > _layer("data") for name in imported_names(probe, "data.probe"))


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    from hpc_seaice.train import trainer\n",
        "import importlib\nimportlib.import_module('hpc_seaice.train.trainer')\n",
        "ENTRY = 'hpc_seaice.train.trainer:run_training'\n",
        "import subprocess\nsubprocess.run(['python', '-m', 'hpc_seaice.train.trainer'])\n",
        "from ...train import trainer\n",
        "import hpc_seaice.train.trainer as t\n",
    ],
    ids=["in-function", "import_module", "entry-string", "dash-m", "relative", "import-as"],
)
def test_the_reader_sees_every_way_of_importing(source):
    names = imported_names(source, "data.format.probe")
    assert resolve(max(names, key=len), MODULES) == "train.trainer", names


def test_a_docstring_naming_a_module_is_no_import():
    assert imported_names('"""Calls hpc_seaice.train.trainer:run_training."""\n') == set()


def test_computed_imports_are_found():
    assert computed_imports("import importlib\nname = 'x'\nimportlib.import_module(name)\n") == [3]
    assert computed_imports("import importlib\nimportlib.import_module('hpc_seaice.cli')\n") == []


def test_the_cycle_check_can_fail():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_file_over_the_line_limit():
    files = list(PACKAGE.rglob("*.py")) + list((ROOT / "benchmarks").rglob("*.py"))
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them along their seams): {long}"


def test_nothing_cites_notes_outside_the_repository():
    # spelled in pieces, so this file does not cite them itself
    needles = ("../" + "shared", "PAPER" + "_NOTES", "DESIGN" + " section", "DESIGN" + " §")
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "docs").rglob("*.md")]
    files += [ROOT / "README.md", *(ROOT / "configs").rglob("*.yaml"), *(PACKAGE / "presets").glob("*.yaml")]
    files += list((ROOT / "launch").rglob("*"))
    citing = [str(p.relative_to(ROOT)) for p in files if p.is_file() and any(n in p.read_text() for n in needles)]
    assert not citing, f"these cite notes that are not in the repository: {citing}"
