"""Benchmark: the generation farm (issue 20) on this machine's CPUs: 1 vs 2 Ray workers.

A throwaway game repo gets N tiny-model specs (distinct prompts and seeds, `--duration` s
each, ogg + mp3, `batch_size = 2` so the planner's batches can be shared between workers).
Each run is one `python -m importer build --farm local` subprocess on an empty cache and
empty assets, with `[farm] workers = 1` or `2` (one CPU each: Ray gives each worker one
torch thread). Reported per case, as medians over `--runs`: the build's wall time, the
farm's start-up (Ray started inside the build: "farm started on this machine in X s"),
the slowest worker's model load, and the rest (wall minus start-up: loading, generating,
rendering on the workers, verifying and publishing here). The 1-vs-2 speed-up is given on
the wall time and on the rest. One local build (no farm, one torch thread) is the
baseline, and every farm run's index and files are checked against it (bit-identical).

`--join` also starts a two-node Ray cluster on loopback (tests/rayfarm.py: `ray start
--head` plus a second `ray start` node process) and reports how long that took and how
long a build took to join it over Ray Client (`--farm ray://...`, "farm joined ... in X s").

    .venv/bin/python bench/farm.py [--tracks 12] [--duration 5] [--runs 3] [--join]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SPEC = (
    'name = "b{i}"\nprompt = "bench track number {i}"\nduration = {duration}\nseed = {i}\n\n'
    '[output]\nformats = ["ogg", "mp3"]\n'
)
STARTED = re.compile(r"farm (?:started on this machine|joined at \S+) in ([0-9.]+) s")
LOADED = re.compile(r": model loaded: .* \(([0-9.]+) s\)")


def build(repo: Path, cache: Path, env: dict[str, str], *args: str) -> tuple[float, str]:
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(repo / "assets", ignore_errors=True)
    shutil.rmtree(repo / ".trackspec", ignore_errors=True)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "importer", "build", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return wall, proc.stderr


def outputs(repo: Path) -> dict[str, str]:
    return {
        p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((repo / "assets").rglob("*"))
        if p.is_file()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=12)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a tiny model folder (default: made with `model tiny`)")
    parser.add_argument("--join", action="store_true", help="also time a loopback cluster's start and a join")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="trackspec-bench-farm-"))
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("TRACKSPEC_FARM", None)
    model = args.model
    if model is None:
        model = work / "tiny"
        subprocess.run(
            [sys.executable, "-m", "importer", "model", "tiny", str(model)], env=env, check=True, capture_output=True
        )
    env["TRACKSPEC_MODEL"] = str(model)
    repo, cache = work / "game", work / "cache"
    env["TRACKSPEC_CACHE_DIR"] = str(cache)
    (repo / "specs").mkdir(parents=True)
    for i in range(args.tracks):
        (repo / "specs" / f"b{i}.trackspec").write_text(SPEC.format(i=i, duration=args.duration))

    def configure(farm: str) -> None:
        (repo / "trackspec.toml").write_text(f'specs = ["specs"]\nbatch_size = 2\n{farm}')

    configure("")
    local_wall, _ = build(repo, cache, env)
    reference = outputs(repo)
    print(f"local build (no farm, 1 thread): {local_wall:.1f} s", flush=True)

    cases: dict[int, list[tuple[float, float, float]]] = {}
    for run in range(args.runs):
        for workers in (1, 2):
            configure(f'\n[farm]\naddress = "local"\nworkers = {workers}\n')
            wall, stderr = build(repo, cache, env)
            started = float(STARTED.search(stderr).group(1))
            loads = [float(x) for x in LOADED.findall(stderr)]
            assert len(loads) == workers or (workers == 2 and len(loads) == 1), stderr
            assert outputs(repo) == reference, "farm outputs differ from the local build"
            cases.setdefault(workers, []).append((wall, started, max(loads)))
            print(
                f"run {run + 1}, {workers} worker(s): wall {wall:.1f} s, farm start {started:.1f} s, "
                f"model load {max(loads):.1f} s (loads: {len(loads)})",
                flush=True,
            )

    med = {w: tuple(statistics.median(r[k] for r in runs) for k in range(3)) for w, runs in cases.items()}
    print("\n| case | median wall | farm start | model load (slowest worker) | rest (wall - start) |")
    print("|---|---|---|---|---|")
    print(f"| local build, no farm | {local_wall:.1f} s | - | - | - |")
    for w, (wall, started, load) in sorted(med.items()):
        print(
            f"| farm local, {w} CPU worker(s) | {wall:.1f} s | {started:.1f} s | {load:.1f} s "
            f"| {wall - started:.1f} s |"
        )
    (w1, s1, _), (w2, s2, _) = med[1], med[2]
    print(f"\nspeed-up 2 vs 1 workers: {w1 / w2:.2f}x on wall time, {(w1 - s1) / (w2 - s2):.2f}x without the start-up")
    result = {
        "tracks": args.tracks,
        "duration": args.duration,
        "runs": args.runs,
        "local_wall": local_wall,
        "cases": {str(w): runs for w, runs in cases.items()},
    }

    if args.join:
        sys.path.insert(0, str(PROJECT / "tests"))
        from rayfarm import RESOURCE, RayCluster

        start = time.monotonic()
        cluster = RayCluster(work / "ray").start()
        cluster_start = time.monotonic() - start
        try:
            configure(f'\n[farm]\naddress = "auto"\nresource = "{RESOURCE}"\n')
            wall, stderr = build(repo, cache, {**env, **cluster.env}, "--farm", cluster.address)
            joined = float(STARTED.search(stderr).group(1))
            assert outputs(repo) == reference, "farm outputs differ from the local build"
        finally:
            cluster.stop()
        print(
            f"\nloopback cluster (head + 1 worker node) started in {cluster_start:.1f} s; a build joined it "
            f"over Ray Client in {joined:.1f} s; that build (2 workers) took {wall:.1f} s"
        )
        result.update(cluster_start=cluster_start, join=joined, join_build_wall=wall)
    print(json.dumps(result))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
