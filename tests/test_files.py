"""Atomic result files: whole or absent, readable like any other file, leftovers told apart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlcbench.files import SAFE_NAME, atomic_write_text, remove_stale_temporaries


def test_a_result_file_gets_the_usual_mode_under_the_umask(tmp_path: Path) -> None:
    """mkstemp's private 0600 would hide results from the rest of a group sharing a folder."""
    previous = os.umask(0o027)
    try:
        path = tmp_path / "metrics.json"
        atomic_write_text(path, "{}\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(previous)
    assert os.umask(previous) == previous  # the umask was put back as it was


def test_rewriting_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_only_leftovers_of_dead_writers_are_removed(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(finished.stdout)
    dead = tmp_path / f".scores.csv.{dead_pid}.abc123.tmp"
    live = tmp_path / f".scores.csv.{os.getpid()}.def456.tmp"
    unnamed = tmp_path / ".scores.csv.tmp"
    for leftover in (dead, live, unnamed):
        leftover.write_text("partial")
    remove_stale_temporaries(tmp_path)
    assert not dead.exists() and not unnamed.exists()
    assert live.exists()


@pytest.mark.parametrize("name", ["quickstart", "coco-2017", "run_1.b"])
def test_safe_names_are_plain_file_names(name: str) -> None:
    assert SAFE_NAME.match(name)


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", "", "a b", "c:\\x"])
def test_names_that_could_leave_the_folder_are_refused(name: str) -> None:
    assert not SAFE_NAME.match(name)
