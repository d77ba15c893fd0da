"""Benchmark: rendering several tracks one at a time vs on the build's render pool.

N tracks of stereo audio at MusicGen's 32 kHz (different tones per track) are put in a
fresh cache as raw entries; each run renders all of them with `importer.render.render_raw`,
the function the build's executor runs per track (resample to 44.1 kHz, one ffmpeg for
OGG q6 + MP3 V4, a full decode of each output, the render cache entry). The render
entries are removed before every run, so each run does the whole work.

  sequential   a loop on this thread, as the build did before the pool
  pool, w=K    `importer.render_pool.RenderPool(K)`: all N submitted, then waited for

Prints the median (and min/max) wall time of --runs runs per case, the speed-up over
sequential, and the median CPU time (this process and its ffmpeg children, user + system).

    .venv/bin/python bench/parallel_encode.py [--tracks 8] [--seconds 20] [--runs 3] [--workers 2,4]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importer.cache import CacheEntry, LocalCache  # noqa: E402
from importer.config import auto_workers  # noqa: E402
from importer.encode import EncodeSettings  # noqa: E402
from importer.render import RenderSettings, render_raw  # noqa: E402
from importer.render_pool import RenderPool  # noqa: E402

#: The chain a default spec renders: OGG + MP3, web loudness (-16 LUFS) with its measurement.
SETTINGS = RenderSettings(
    EncodeSettings(formats=("ogg", "mp3"), sample_rate=44100, ogg_quality=6, mp3_quality=4), loudness_target=-16.0
)
RAW_RATE = 32000


def track_audio(index: int, seconds: float) -> np.ndarray:
    """Stereo float32 (2, n) at 32 kHz: a chord per channel, shifted per track, plus quiet noise."""
    t = np.arange(int(seconds * RAW_RATE), dtype=np.float64) / RAW_RATE
    rng = np.random.default_rng(index)
    base = 110.0 * 2 ** (index / 12)
    left = sum(0.15 * np.sin(2 * np.pi * base * r * t) for r in (2.0, 2.52, 3.0))
    right = sum(0.15 * np.sin(2 * np.pi * base * r * t) for r in (1.5, 2.0, 2.67))
    return (np.stack([left, right]) + 0.05 * rng.standard_normal((2, t.size))).astype(np.float32)


def make_raw_entries(cache: LocalCache, tracks: int, seconds: float, scratch: Path) -> list[CacheEntry]:
    entries = []
    for i in range(tracks):
        audio = track_audio(i, seconds)
        path = scratch / f"raw{i}.f32"
        np.ascontiguousarray(audio, dtype="<f4").tofile(path)
        info = {
            "sample_rate": RAW_RATE,
            "channels": 2,
            "samples": audio.shape[1],
            "seed": i,
            "model": "bench",
            "inputs": {},
        }
        entries.append(cache.put("raw", f"{i:064x}", {"audio.f32": path}, info))
    return entries


def render_key(i: int) -> str:
    return f"{i + 1000:064x}"


def sequential(cache: LocalCache, raws: list[CacheEntry]) -> None:
    for i, raw in enumerate(raws):
        render_raw(cache, raw, SETTINGS, render_key(i), {})


def pooled(workers: int) -> Callable[[LocalCache, list[CacheEntry]], None]:
    def run(cache: LocalCache, raws: list[CacheEntry]) -> None:
        with RenderPool(workers) as pool:
            jobs = [pool.submit(render_raw, cache, raw, SETTINGS, render_key(i), {}) for i, raw in enumerate(raws)]
            for job in jobs:
                job.result()  # raises if a render failed

    return run


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the ffmpegs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(
    runs: int, cache: LocalCache, raws: list[CacheEntry], work: Callable[[LocalCache, list[CacheEntry]], None]
) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each run."""
    times, cpu = [], []
    for _ in range(runs):
        shutil.rmtree(cache.root / "render", ignore_errors=True)
        cpu_start, start = cpu_seconds(), time.perf_counter()
        work(cache, raws)
        times.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - cpu_start)
    return times, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--workers",
        default=None,
        help=f"comma-separated pool sizes (default: 1 and the build's auto, {auto_workers()} here)",
    )
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")] if args.workers else sorted({1, auto_workers()})

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cache = LocalCache(tmp / "cache")
        raws = make_raw_entries(cache, args.tracks, args.seconds, tmp)
        sequential(cache, raws[:1])  # ffmpeg binary and libraries into the page cache
        rows = {"sequential (loop, no pool)": measure(args.runs, cache, raws, sequential)}
        for workers in counts:
            rows[f"pool, workers={workers}"] = measure(args.runs, cache, raws, pooled(workers))

    base = statistics.median(rows["sequential (loop, no pool)"][0])
    audio = args.tracks * args.seconds
    print(
        f"render {args.tracks} tracks x {args.seconds:.0f} s stereo (32 kHz -> 44.1 kHz, OGG q6 + MP3 V4, "
        f"verified), median of {args.runs} runs; {auto_workers()} usable cores"
    )
    for label, (times, cpu) in rows.items():
        med = statistics.median(times)
        print(
            f"  {label:<28} median {med:7.2f} s   min {min(times):7.2f}   max {max(times):7.2f}   "
            f"{audio / med:5.1f}x real time   speed-up {base / med:4.2f}x   CPU {statistics.median(cpu):6.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
