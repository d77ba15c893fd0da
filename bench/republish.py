"""Benchmark: republishing N built tracks when nothing is generated or encoded.

Changing ``[defaults] genre`` in trackspec.toml moves every track to another folder: each
track is restored from the cache (or its old files) into the new folder, its old files are
deleted and its index entry rewritten. Before a build replaces or deletes files the index
lists, it unlists their tracks (``index.IndexTransaction``): once per batch, not once per
track, so the whole move costs O(N) and a handful of index writes.

For each N, a throwaway repo gets N specs sharing one take (one generation with the tiny
model, the rest restored), is built once, then the genre is flipped back and forth and each
``trackspec build`` is timed as a whole process (median of --runs). ``-v`` reports how many
times the build wrote the index; the script prints it beside the time.

    .venv/bin/python bench/republish.py [--sizes 100 1000] [--runs 5] [--model models/tiny]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from game_repo import CLI, make_game_repo

SPEC = 'prompt = "one shared take"\nduration = 1.0\nseed = 7\n'


def republish(root: Path, env: dict[str, str], genre: str) -> tuple[float, int]:
    (root / "trackspec.toml").write_text(f'specs = ["track_specs"]\n[defaults]\ngenre = "{genre}"\n')
    start = time.perf_counter()
    proc = subprocess.run([*CLI, "build", "-v"], cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    writes = re.search(r"index written (\d+) time", proc.stderr)
    if not (root / "assets/music" / genre).is_dir():
        raise SystemExit(f"nothing was moved to {genre}")
    return elapsed, int(writes.group(1)) if writes else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", type=Path, help="a local model dir (default: a tiny one made here)")
    args = parser.parse_args()
    medians = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            root, env = make_game_repo(tmp, args.model)
            for i in range(size):
                (root / "track_specs" / f"track{i:04d}.trackspec").write_text(SPEC)
            start = time.perf_counter()
            subprocess.run([*CLI, "build", "-q"], cwd=root, env=env, check=True, capture_output=True)
            first = time.perf_counter() - start
            runs = [republish(root, env, "ambient" if i % 2 == 0 else "synthwave") for i in range(args.runs)]
        times = [t for t, _ in runs]
        medians[size] = statistics.median(times)
        print(
            f"N={size:5d}: genre move median {medians[size]:.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
            f"n={len(times)}); index writes per build {sorted({w for _, w in runs})}; first build {first:.1f} s"
        )
    sizes = sorted(medians)
    for small, large in zip(sizes, sizes[1:]):
        ratio = medians[large] / medians[small]
        linear = large / small
        print(
            f"N={large} / N={small}: {ratio:.1f}x for {linear:.0f}x the tracks "
            f"(linear within 3x: {'yes' if ratio <= 3 * linear else 'NO'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
