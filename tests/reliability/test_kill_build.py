"""SIGKILL of `trackspec build` at seeded random moments, across every phase of a build.

Each trial changes the repo (a new seed: generation; a new ogg_quality: encoding from
cached raw audio; a new genre: restore to a new path and removal of the old files; meta:
an index-only write; a spec deleted or restored; the index deleted), starts a real build
and SIGKILLs it, half the time after a delay drawn over that kind of build's measured
length, half the time at the N-th call of a file system primitive (``killpoint.py``:
cache entry renames, publications, index replacements, deletions). After each: the tree
holds (``check_tree``), the next build exits 0 and leaves exactly what an earlier build
of the same specs left; at the end, exactly what a clean build in a fresh repo leaves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from faults import Project, build, kill_after, popen_cli
from invariants import TALLY, check_complete, check_tree

#: Builds that must be killed mid-way (a build that finishes first is a trial, not a kill).
KILLS = int(os.environ.get("RELIABILITY_BUILD_KILLS", "50"))
MAX_TRIALS = 2 * KILLS
#: Every this many trials one generates (slow on a CPU); the others restore, encode, index, remove.
GENERATE_EVERY = 12
#: Hard bound for the whole matrix; each subprocess has its own timeout as well.
BUDGET_SECONDS = 480
KILLPOINT = Path(__file__).with_name("killpoint.py")
PRIMITIVES = ("fsync", "rename", "replace", "unlink")


def _index_files(index: dict) -> dict:
    return {name: {fmt: f["sha256"] for fmt, f in t["files"].items()} for name, t in index["tracks"].items()}


def _killed_at_point(repo, rng, kind: str, calls: dict) -> tuple[bool, str]:
    """A build SIGKILLed at the N-th call of a primitive; (whether it was hit, where).

    N is drawn from the calls this kind of build made last time it was not hit (``calls``).
    """
    primitive = rng.choice([p for p in PRIMITIVES if calls.get((kind, p)) != 0] or list(PRIMITIVES))
    n, when = rng.randint(1, calls.get((kind, primitive), 3)), rng.choice(["before", "after"])
    proc = subprocess.run(
        [sys.executable, str(KILLPOINT), primitive, str(n), when, "--", "build"],
        cwd=repo.root,
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    where = f"{when} os.{primitive} #{n}"
    assert proc.returncode in (0, -9), f"{where}: rc={proc.returncode}\n{proc.stderr}"
    if proc.returncode == 0:
        calls[(kind, primitive)] = int(proc.stderr.rsplit("killpoint-calls=", 1)[1].split()[0])
    return proc.returncode == -9, where


def test_sigkill_build_matrix(built_repo, rng):
    repo = built_repo
    project = Project(repo)
    expected = {project.signature(): check_complete(repo.root, decode=True)}
    estimate = {"generate": 8.0}  # kind -> seconds its last full build took (then as measured)
    calls: dict[tuple[str, str], int] = {}
    start = time.monotonic()
    hits = trial = 0
    while hits < KILLS:
        assert trial < MAX_TRIALS, f"only {hits} of {trial} builds were still running when killed"
        assert time.monotonic() - start < BUDGET_SECONDS, f"only {hits} kills in {BUDGET_SECONDS} s"
        kind = project.mutate(rng, "generate" if trial % GENERATE_EVERY == 3 else None)
        if rng.random() < 0.5:
            delay = rng.uniform(0.0, 0.8 * estimate.get(kind, 1.0))
            began = time.monotonic()
            killed, where = kill_after(popen_cli(repo, "build"), delay), f"{delay:.2f} s"
            if not killed:
                estimate[kind] = time.monotonic() - began
        else:
            killed, where = _killed_at_point(repo, rng, kind, calls)
        TALLY.trial()
        problems = check_tree(repo.root)
        assert not problems, f"trial {trial} ({kind}, killed at {where}): {problems}"
        if killed:  # the next build repairs; a build that finished is its own next build
            after = build(repo)
            assert after.returncode == 0, f"trial {trial} ({kind}, {where}): recovery build failed\n{after.stderr}"
            hits += 1
            TALLY.survived()
        index = check_complete(repo.root)
        signature = project.signature()
        if signature in expected:  # the same specs built before: the very same files and index
            assert index == expected[signature], f"trial {trial} ({kind}, {where}): differs from an earlier build"
        expected.setdefault(signature, index)
        trial += 1
    # The end state equals a clean build of the same specs in a fresh repo with an empty cache.
    clean_root = repo.root.parent / "clean"
    (clean_root / "track_specs").mkdir(parents=True)
    (clean_root / "trackspec.toml").write_text((repo.root / "trackspec.toml").read_text())
    for spec in (repo.root / "track_specs").glob("*.trackspec"):
        (clean_root / "track_specs" / spec.name).write_text(spec.read_text())
    clean = type(repo)(
        clean_root,
        repo.root.parent / "clean-cache",
        {**repo.env, "TRACKSPEC_CACHE_DIR": str(repo.root.parent / "clean-cache")},
    )
    assert build(clean).returncode == 0
    assert check_complete(clean_root, decode=True) == check_complete(repo.root, decode=True)
