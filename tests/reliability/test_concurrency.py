"""Two `trackspec build` processes and the `watch` daemon started together on one repo.

Each track's audio must be generated exactly once across the three processes (counted
from their JSON output), the index must list every track (no lost update), and the end
state must be a complete, clean build.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

from faults import TRACKS, Project, build, popen_cli
from invariants import TALLY, check_complete


def test_two_builds_and_the_daemon_together(repo):
    project = Project(repo)
    for n, name in enumerate(TRACKS):
        project.specs[name].seed = 10 + n
    project.write()
    procs = [popen_cli(repo, "build", "--json", stdout=subprocess.PIPE) for _ in range(2)]
    daemon = popen_cli(repo, "watch", "--json", stdout=subprocess.PIPE)
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the daemon may still publish what it generated
        if build(repo, "--check").returncode == 0:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    daemon.send_signal(signal.SIGTERM)
    d_out, d_err = daemon.communicate(timeout=120)
    assert daemon.returncode == 0, d_err
    TALLY.trial()

    generated = [t["name"] for out, _ in outputs for t in json.loads(out)["tracks"] if t["action"] == "generate"]
    events = [json.loads(line) for line in d_out.splitlines()]
    generated += [e["name"] for e in events if e["event"] == "generated" and e["ok"]]
    assert sorted(generated) == sorted(TRACKS), f"generations: {generated}"
    index = check_complete(repo.root, decode=True)
    assert sorted(index["tracks"]) == sorted(TRACKS)
    assert build(repo, "--check").returncode == 0
    TALLY.survived()
