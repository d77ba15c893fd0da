"""Benchmark: generation pipeline wall time on the CPU with the tiny model, batched or not.

For each case a throwaway game repo gets N specs (distinct prompts, one shared seed, same
duration, so each needs its own generation and all may share a batch) and a fresh empty
cache; then one `python -m importer build` subprocess generates, resamples, encodes,
verifies and publishes them all. Cases: 1, 4 and 16 tracks with the project's default
`batch_size` (8: 16 tracks run as two batches), 16 tracks with `batch_size = 16` (one
batch), and 4 and 16 tracks with `batch_size = 1` (no batching). Prints total wall time,
the model load time the build reports on stderr ("model loaded: ... (X s)"), the rest
(generate + post + publish, start-up included), per-track time, and the speed-up per
track over the 1-track case, and the CPU seconds (user + system) each build used.

The tiny model's weights are random and small, so this measures the pipeline's overheads
and the batching of the decode loop on CPU, not what a real model costs.

`--threads N` sets OMP_NUM_THREADS (torch's intra-op threads) for the builds. By default
torch uses one per core; on a 2-core machine shared with other work that makes each decode
step wait for a busy core, and wall and CPU time swing by 10x or more between runs.

    .venv/bin/python bench/cpu_batching.py [--duration 5] [--repeats 1] [--model models/tiny] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SPEC = 'prompt = "bench track number {i}"\nduration = {duration}\nseed = 7\n'
LOADED = re.compile(r"^model loaded: .* \(([0-9.]+) s\)$", re.MULTILINE)
#: (tracks, batch_size in trackspec.toml; None = the project default)
CASES: list[tuple[int, int | None]] = [(1, None), (4, None), (16, None), (16, 16), (4, 1), (16, 1)]


@dataclass
class Run:
    wall: float
    load: float
    cpu: float  # user + system seconds of the build process (its ffmpeg children included)


def build_once(tmp: Path, model: Path, tracks: int, batch: int | None, duration: float, threads: int | None) -> Run:
    """A fresh repo and cache with ``tracks`` stale specs; one timed `trackspec build`."""
    root = tmp / f"game-{tracks}-{batch}-{time.monotonic_ns()}"
    (root / "track_specs").mkdir(parents=True)
    toml = 'specs = ["track_specs"]\ndevice = "cpu"\n' + (f"batch_size = {batch}\n" if batch else "")
    (root / "trackspec.toml").write_text(toml)
    for i in range(tracks):
        (root / "track_specs" / f"t{i:02d}.trackspec").write_text(SPEC.format(i=i, duration=duration))
    env = {
        **os.environ,
        "TRACKSPEC_CACHE_DIR": str(root / "cache"),
        "PYTHONPATH": str(PROJECT),
        "TRACKSPEC_MODEL": str(model),
    }
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "importer", "build"], cwd=root, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    generated = proc.stdout.count("\ngenerate ") + proc.stdout.startswith("generate ")
    if proc.returncode != 0 or generated != tracks:
        raise SystemExit(
            f"build of {tracks} tracks: exit {proc.returncode}, {generated} generated\n"
            f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
        )
    loads = [float(x) for x in LOADED.findall(proc.stderr)]
    return Run(wall, sum(loads), cpu)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per track (default 5)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per case; the median is shown")
    parser.add_argument("--model", type=Path, help="a local model dir (default: a tiny one made here)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the builds (default: torch's, one per core)")
    args = parser.parse_args()

    rows: list[tuple[int, int | None, Run]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = args.model.resolve() if args.model else tmp / "tiny"
        if not args.model:
            subprocess.run(
                [sys.executable, "-m", "importer", "model", "tiny", str(model)],
                check=True,
                capture_output=True,
                env={**os.environ, "PYTHONPATH": str(PROJECT)},
            )
        # warm-up: torch and the model into the page cache
        build_once(tmp, model, 1, None, args.duration, args.threads)
        for tracks, batch in CASES:
            runs = [build_once(tmp, model, tracks, batch, args.duration, args.threads) for _ in range(args.repeats)]
            rows.append(
                (tracks, batch, Run(*(statistics.median(getattr(r, f) for r in runs) for f in ("wall", "load", "cpu"))))
            )

    base = rows[0][2]
    base_rest = base.wall - base.load
    print(
        f"CPU generation pipeline, tiny model, {args.duration:g} s tracks, fresh cache, one `trackspec build` "
        f"per case (median of {args.repeats}); torch threads: {args.threads or 'default (one per core)'}"
    )
    print(
        f"  {'tracks':>6} {'batch_size':>10} {'wall s':>8} {'load s':>7} {'rest s':>7} {'s/track':>8} "
        f"{'rest/track':>10} {'speed-up/track':>15} {'cpu s':>7}"
    )
    for tracks, batch, run in rows:
        rest = run.wall - run.load
        speedup = base_rest / (rest / tracks)
        label = str(batch) if batch else "8 (default)"
        print(
            f"  {tracks:>6} {label:>10} {run.wall:8.2f} {run.load:7.2f} {rest:7.2f} {run.wall / tracks:8.2f} "
            f"{rest / tracks:10.2f} {speedup:14.2f}x {run.cpu:7.1f}"
        )
    print(
        "  rest = wall - model load (process start-up, imports, generation, resample, encode, verify, "
        "publish); speed-up/track = rest/track of 1 track / rest/track of this case;\n"
        "  cpu s = user + system CPU seconds of the build and its children"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
