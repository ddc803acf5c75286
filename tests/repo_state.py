"""What ``git status`` says about the repository, to check that a test run leaves it as it found it.

Tests write into temporary folders only; a run that leaves a run folder, a results file or a
scheduler log in the checkout would dirty a user's tree (and could be committed by mistake).
The state is every entry of ``git status --porcelain --ignored`` (ignored files too: ``runs/``
and ``demo/`` are ignored, yet a test must not write there) with a hash of each changed file, so
a file that was already modified and is modified again is seen too. Caches that importing and
running pytest create (``__pycache__``, ``.pytest_cache``) are left out.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache")


def tree_state(root: Path) -> set[str] | None:
    """One line per entry of ``git status`` under ``root`` (+ the file's hash), or None without git."""
    try:
        proc = subprocess.run(
            ["git", "status", "--porcelain", "--ignored"], cwd=root, capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    state = set()
    for line in proc.stdout.splitlines():
        name = line[3:].split(" -> ")[-1].strip('"')
        if any(part in CACHES for part in Path(name).parts):
            continue
        path = root / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""
        state.add(f"{line} {digest}".rstrip())
    return state


def changes(before: set[str], after: set[str]) -> list[str]:
    """Entries the run added or changed (what was dirty before and stayed the same is not listed)."""
    return sorted(after - before)
