"""The check that a test run writes nothing into the repository (tests/conftest.py runs it at the
end of every session) sees new, changed and ignored files, and not what was dirty before."""

import subprocess

from repo_state import changes, tree_state


def _repo(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("runs/\n")
    (tmp_path / "tracked.txt").write_text("a\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", *env, "-C", str(tmp_path), "commit", "-q", "-m", "init"], check=True)
    return tmp_path


def test_a_clean_run_changes_nothing(tmp_path):
    repo = _repo(tmp_path)
    (repo / "tracked.txt").write_text("dirty before the run\n")
    before = tree_state(repo)
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert changes(before, tree_state(repo)) == []


def test_new_ignored_and_changed_files_are_seen(tmp_path):
    repo = _repo(tmp_path)
    (repo / "tracked.txt").write_text("dirty before the run\n")
    before = tree_state(repo)
    (repo / "runs" / "a").mkdir(parents=True)
    (repo / "runs" / "a" / "metrics.jsonl").write_text("{}\n")
    (repo / "slurm-5.out").write_text("log\n")
    (repo / "tracked.txt").write_text("changed again by the run\n")
    found = "\n".join(changes(before, tree_state(repo)))
    assert "runs/" in found and "slurm-5.out" in found and "tracked.txt" in found, found


def test_without_git_there_is_no_state(tmp_path):
    assert tree_state(tmp_path / "not-a-repo") is None
