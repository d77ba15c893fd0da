"""One test per hole the fault matrix found, each pinned to the exact moment that exposed it
(``killpoint.py``: a real SIGKILL at the N-th call of a file system primitive)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from faults import Project, build
from invariants import TALLY, check_complete, check_tree

KILLPOINT = Path(__file__).with_name("killpoint.py")


def killed_build(repo, primitive: str, n: int, when: str = "after") -> subprocess.CompletedProcess:
    """A build SIGKILLed right after its N-th ``primitive`` on a path in the assets folder."""
    return subprocess.run(
        [sys.executable, str(KILLPOINT), primitive, str(n), when, "--match", "/assets/", "--", "build"],
        cwd=repo.root,
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "change, points",
    [
        ("encode", [("replace", 1), ("replace", 2), ("replace", 3)]),
        ("genre", [("replace", 2), ("unlink", 1), ("unlink", 2)]),
        ("toggle", [("unlink", 1), ("unlink", 2)]),
    ],
)
def test_hole1_index_never_lists_a_file_being_replaced_or_deleted(built_repo, change, points):
    """Hole 1: a build replaced (or deleted) a published file first and rewrote the index up
    to 0.5 s later, so a kill in between left the index naming a file whose sha256 no
    longer matched, or that was gone. Now the index drops the track first (its old files
    noted in .trackspec/pending-removals.json) and the next build deletes what was left."""
    repo = built_repo
    project = Project(repo)
    state = project.specs["alpha"]
    hits = 0
    for primitive, n in points:
        if change == "encode":
            state.ogg_quality = 6 if state.ogg_quality != 6 else 2
        elif change == "genre":
            state.genre = "combat" if state.genre == "synthwave" else "synthwave"
        else:
            state.present = not state.present
        project.write()
        proc = killed_build(repo, primitive, n)
        assert proc.returncode in (0, -9), proc.stderr
        hits += proc.returncode == -9
        TALLY.trial()
        assert check_tree(repo.root) == [], f"killed after os.{primitive} #{n}"
        assert build(repo).returncode == 0
        check_complete(repo.root)  # also: nothing left in the assets that the index does not list
        if proc.returncode == -9:
            TALLY.survived()
    assert hits >= len(points) - 1
