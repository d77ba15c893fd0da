"""SIGKILL and SIGTERM of the `trackspec watch` daemon at seeded random moments.

Each trial starts a real daemon, changes a spec after a random pause (so the kill finds
it planning, generating, encoding, publishing or idle), then signals it after another.
SIGTERM must end it with exit 0 (it finishes the current step); after either signal the
tree holds and the next `build` exits 0 with exactly a clean build's index.
"""

from __future__ import annotations

import signal
import time

import pytest

from faults import Project, build, kill_after, popen_cli
from invariants import TALLY, check_complete, check_tree

TRIALS = 8


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_daemon_signal_matrix(repo, rng, sig):
    project = Project(repo)
    project.write()
    assert build(repo).returncode == 0
    expected = {project.signature(): check_complete(repo.root)}
    for trial in range(TRIALS):
        daemon = popen_cli(repo, "watch", "--json", "--debounce", "50")
        time.sleep(rng.uniform(0.3, 2.5))  # start-up, initial cycle, or idle
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
