"""Benchmark: save -> index updated, for edits the daemon serves from the cache.

Sets up a throwaway game repo whose two takes of one spec are already in the cache,
starts `trackspec watch --json`, then saves the spec N times, alternating between the two
takes (each save is a cache restore: two files copied and verified, index rewritten),
and N times changing only [meta] (index-only). Latency is from just before the save to
the daemon's `index_written` event. Prints p50/p95/max per kind.

    .venv/bin/python bench/watch_latency.py [--saves 50] [--others 0] [--model models/tiny]

``--others N`` adds N more (fresh) specs to the repo, to show what a bigger repo costs
each planning cycle. ``--profile FILE`` runs the daemon under cProfile (its main thread
runs the cycles; read the stats with ``pstats``). A first, unmeasured save waits for the
daemon's initial cycle.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from game_repo import CLI, make_game_repo

SPEC = 'prompt = "{prompt}"\nduration = 2.0\nseed = 7\n\n[meta]\nbpm = {bpm}\n'


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--others", type=int, default=0, help="other specs in the repo (default 0)")
    parser.add_argument("--model", type=Path, help="a local model dir (default: a tiny one made here)")
    parser.add_argument("--profile", type=Path, help="run the daemon under cProfile, its stats written to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, env = make_game_repo(tmp, args.model)
        cli = CLI
        spec = root / "track_specs" / "theme.trackspec"
        for prompt in ("take b", "take a"):  # both takes into the cache; "take a" published
            spec.write_text(SPEC.format(prompt=prompt, bpm=90))
            subprocess.run([*cli, "build", "-q"], cwd=root, env=env, check=True, capture_output=True)
        for i in range(args.others):
            (root / "track_specs" / f"other{i:04d}.trackspec").write_text(SPEC.format(prompt="take a", bpm=i))
        subprocess.run([*cli, "build", "-q"], cwd=root, env=env, check=True, capture_output=True)

        if args.profile:  # where a cycle's time goes (the daemon's main thread runs the cycles)
            cli = [sys.executable, "-m", "cProfile", "-o", str(args.profile.resolve()), "-m", "importer"]
        proc = subprocess.Popen(
            [*cli, "watch", "--json"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        writes: list[float] = []
        ready = threading.Event()
        cond = threading.Condition()

        def read() -> None:
            for line in proc.stdout:
                event = json.loads(line)
                if event["event"] == "watching":
                    ready.set()
                if event["event"] == "index_written":
                    with cond:
                        writes.append(event["time"])
                        cond.notify_all()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(60)

        def save_and_wait(text: str) -> float:
            with cond:
                seen = len(writes)
            start = time.time()
            spec.write_text(text)
            with cond:
                if not cond.wait_for(lambda: len(writes) > seen, timeout=30):
                    raise SystemExit("the daemon did not update the index within 30 s")
                latency = writes[seen] - start
            time.sleep(0.15)  # past the debounce window before the next save
            return latency

        # Not measured: this save waits for the initial cycle (which plans every spec) to end.
        save_and_wait(SPEC.format(prompt="take a", bpm=89))
        restore = [
            save_and_wait(SPEC.format(prompt="take b" if i % 2 == 0 else "take a", bpm=90)) for i in range(args.saves)
        ]
        index_only = [save_and_wait(SPEC.format(prompt="take a", bpm=91 + i)) for i in range(args.saves)]
        proc.terminate()
        proc.wait(30)

    print(
        f"trackspec watch: save -> index updated, {args.saves} saves each, {1 + args.others} specs "
        "in the repo (debounce 100 ms included)"
    )
    for label, values in (("cache restore", restore), ("index-only", index_only)):
        ms = [v * 1000 for v in values]
        print(
            f"  {label:<14} p50 {statistics.median(ms):6.1f} ms   p95 {percentile(ms, 0.95):6.1f} ms"
            f"   max {max(ms):6.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
