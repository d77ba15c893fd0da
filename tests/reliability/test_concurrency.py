"""Two `trackspec build` processes and the `watch` daemon started together on one repo.

Each track's audio must be generated exactly once across the three processes (counted
from their JSON output), the index must list every track (no lost update), and the end
state must be a complete, clean build.
"""

from __future__ import annotations

import json
import signal
import subprocess

from faults import TRACKS, Project, build, popen_cli
from invariants import TALLY, check_complete
from watchproc import WatchProcess


def test_two_builds_and_the_daemon_together(repo):
    project = Project(repo)
    for n, name in enumerate(TRACKS):
        project.specs[name].seed = 10 + n
    project.write()
    procs = [popen_cli(repo, "build", "--json", stdout=subprocess.PIPE) for _ in range(2)]
    daemon = WatchProcess(repo)
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
        for p, (_out, err) in zip(procs, outputs, strict=True):
            assert p.returncode == 0, err
        # Both builds are done. The daemon publishes what it generated; once a spec saved now
        # has been published (and its track removed again), every cycle before is over.
        daemon.barrier((repo.root / "track_specs" / f"{TRACKS[0]}.trackspec").read_text())
        daemon.drop_barrier()
        assert daemon.queue_now() == ([], []), daemon.log()  # nothing left to generate
        assert daemon.stop(signal.SIGTERM, timeout=120) == 0, daemon.log()
    finally:
        daemon.kill()
    TALLY.trial()

    generated = [t["name"] for out, _ in outputs for t in json.loads(out)["tracks"] if t["action"] == "generate"]
    generated += [e["name"] for e in daemon.since(0, "generated") if e["ok"]]
    assert sorted(generated) == sorted(TRACKS), f"generations: {generated}"
    index = check_complete(repo.root, decode=True)
    assert sorted(index["tracks"]) == sorted(TRACKS)
    assert build(repo, "--check").returncode == 0
    TALLY.survived()
