"""SIGKILL and SIGTERM of the `trackspec watch` daemon at seeded random moments.

Each trial starts a real daemon, changes a spec after a random pause (so the kill finds
it planning, generating, encoding, publishing or idle), then signals it after another.
SIGTERM must end it with exit 0 (it finishes the current step); after either signal the
tree holds and the next `build` exits 0 with exactly a clean build's index.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from faults import Project, build, kill_after, popen_cli
from invariants import TALLY, check_complete, check_tree

TRIALS = 8


def _wait_until_watching(daemon, events: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while '"event": "watching"' not in events.read_text():
        assert daemon.poll() is None, daemon.stderr.read()
        assert time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_daemon_signal_matrix(built_repo, rng, sig):
    repo = built_repo
    project = Project(repo)
    expected = {project.signature(): check_complete(repo.root)}
    events = repo.root.parent / "events.jsonl"
    for trial in range(TRIALS):
        with open(events, "w") as out:
            daemon = popen_cli(repo, "watch", "--json", "--debounce", "50", stdout=out)
        _wait_until_watching(daemon, events)  # its signal handlers are installed by then
        time.sleep(rng.uniform(0.0, 2.0))  # the initial cycle, or idle
        kind = project.mutate(rng)
        killed = kill_after(daemon, rng.uniform(0.0, 4.0), sig, timeout=120)
        TALLY.trial()
        stderr = daemon.stderr.read()
        if sig == signal.SIGTERM and killed:
            assert daemon.returncode == 0, f"trial {trial} ({kind}): SIGTERM gave {daemon.returncode}\n{stderr}"
        assert "Traceback" not in stderr, stderr
        problems = check_tree(repo.root)
        assert not problems, f"trial {trial} ({kind}): {problems}"
        after = build(repo)
        assert after.returncode == 0, f"trial {trial} ({kind}): recovery build failed\n{after.stderr}"
        index = check_complete(repo.root)
        if killed:
            TALLY.survived()
        signature = project.signature()
        if signature in expected:
            assert index == expected[signature], f"trial {trial} ({kind}): differs from an earlier build"
        expected.setdefault(signature, index)
