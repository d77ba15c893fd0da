"""SIGKILL and SIGTERM of the `trackspec watch` daemon at seeded random moments.

Each trial starts a real daemon, changes a spec after a random pause (so the kill finds
it planning, generating, encoding, publishing or idle), then signals it after another.
SIGTERM must end it with exit 0 (it finishes the current step); after either signal the
tree holds and the next `build` exits 0 with exactly a clean build's index.
"""

from __future__ import annotations

import signal

import pytest
from faults import Project, build, kill_after, pause
from invariants import TALLY, check_complete, check_tree
from watchproc import WatchProcess

TRIALS = 8


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_daemon_signal_matrix(built_repo, rng, sig):
    repo = built_repo
    project = Project(repo)
    expected = {project.signature(): check_complete(repo.root)}
    for trial in range(TRIALS):
        daemon = WatchProcess(repo, "--debounce", "50")
        try:
            daemon.wait_for(lambda e: e["event"] == "watching")  # its signal handlers are installed by then
            # The fault schedule (seeded): a pause that lands in the initial cycle or in idle
            # time, a change, and the signal a random moment later. These pick the moment of
            # the fault; no step of the test waits for the daemon by them.
            pause(daemon.proc, rng.uniform(0.0, 2.0))
            kind = project.mutate(rng)
            killed = kill_after(daemon.proc, rng.uniform(0.0, 4.0), sig, timeout=120)
            daemon.wait_exit(timeout=120)
        finally:
            daemon.kill()
        TALLY.trial()
        stderr = "".join(daemon.stderr)
        rc = daemon.proc.returncode
        assert killed, f"trial {trial} ({kind}): the daemon exited by itself (rc {rc})\n{stderr}"
        if sig == signal.SIGTERM:
            assert rc == 0, f"trial {trial} ({kind}): SIGTERM gave {rc}\n{stderr}"
        assert "Traceback" not in stderr, stderr
        problems = check_tree(repo.root)
        assert not problems, f"trial {trial} ({kind}): {problems}"
        after = build(repo)
        assert after.returncode == 0, f"trial {trial} ({kind}): recovery build failed\n{after.stderr}"
        index = check_complete(repo.root)
        TALLY.survived()
        signature = project.signature()
        if signature in expected:
            assert index == expected[signature], f"trial {trial} ({kind}): differs from an earlier build"
        expected.setdefault(signature, index)
