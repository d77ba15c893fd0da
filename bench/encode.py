"""Benchmark: the post-generation chain on 60 s of stereo audio, in process.

(a) encode: 60 s of stereo 44.1 kHz float32 (tones plus a little noise) to OGG (q 6) and
    MP3 (V4) with `importer.encode.encode`: one ffmpeg process for both formats, then a full
    decode of each output to check its sample count (the validation the build always does).
    (a1) times that validation alone: the two full decodes of the outputs of (a).
(b) resample + encode: the same audio made at MusicGen's 32 kHz, resampled to 44.1 kHz
    with `importer.audio.resample` (soxr HQ), then (a).
(c) the full post chain as `build` runs it (`importer.render.render_raw` from a raw cache
    entry): resample, DC removal, a 2 s seamless loop, loudness to -16 LUFS under -1 dBTP
    (limited where needed), encode with tags, verify, then decode and measure loudness and
    true peak of both files; (c1)-(c3) time its new steps alone.
(d) tempo: 60 s of a drum pattern at 92.5 BPM over a pad (32 kHz raw, as (c)): `render_raw`
    with the plain 2 s loop and no tempo analysis (d0), then with tempo = "auto" and the
    bar-aligned loop (d), and the analysis alone (d1). The first analysis in a process also
    loads librosa and its numba-compiled functions: timed once, printed apart (d-first).

Prints median (and min/max) of --runs runs, in seconds and x real time.

    .venv/bin/python bench/encode.py [--runs 5] [--seconds 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importer.audio import remove_dc, resample  # noqa: E402
from importer.cache import LocalCache  # noqa: E402
from importer.encode import EncodeSettings, decode_sample_count, encode  # noqa: E402
from importer.loop import make_seamless  # noqa: E402
from importer.loudness import measure_file, normalise  # noqa: E402
from importer.render import RenderSettings, render_raw  # noqa: E402

SETTINGS = EncodeSettings(formats=("ogg", "mp3"), sample_rate=44100, ogg_quality=6, mp3_quality=4)


def test_audio(seconds: float, rate: int) -> np.ndarray:
    """Stereo float32 (2, n): a chord of tones per channel plus quiet noise."""
    t = np.arange(int(seconds * rate), dtype=np.float64) / rate
    rng = np.random.default_rng(0)
    left = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63))
    right = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (146.83, 220.0, 293.66))
    noise = 0.05 * rng.standard_normal((2, t.size))
    return (np.stack([left, right]) + noise).astype(np.float32)


def drum_audio(seconds: float, rate: int, bpm: float = 92.5, first: float = 0.7) -> np.ndarray:
    """Stereo float32: kick on 1 (half on 3), noise snare on 2 and 4, over a pad and noise."""
    rng = np.random.default_rng(1)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    y = 0.25 * (np.sin(2 * np.pi * 110 * t) + np.sin(2 * np.pi * 164.8 * t)) + 0.05 * rng.standard_normal(n)
    h = np.arange(int(0.12 * rate)) / rate
    ramp = np.minimum(1.0, h / 0.001)
    kick = ramp * np.sin(2 * np.pi * (50 + 80 * np.exp(-h / 0.02)) * h) * np.exp(-h / 0.05)
    k = 0
    while (at := first + k * 60.0 / bpm) < seconds - 0.15:
        hit = (
            kick * (0.6 if k % 4 == 0 else 0.3)
            if k % 2 == 0
            else ramp * 0.3 * rng.standard_normal(h.size) * np.exp(-h / 0.03)
        )
        s = round(at * rate)
        y[s : s + h.size] += hit[: n - s]
        k += 1
    return np.stack([0.3 * y, 0.3 * y]).astype(np.float32)  # about -16 LUFS: a gain, little limiting


def measure(runs: int, work: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    pcm44 = test_audio(args.seconds, 44100)
    pcm32 = test_audio(args.seconds, 32000)
    with tempfile.TemporaryDirectory() as tmp_name:
        out = Path(tmp_name)
        encode(pcm44, SETTINGS, out, "warmup")  # ffmpeg binary and libraries into the page cache
        rows = {
            "(a) encode ogg+mp3 + verify": measure(args.runs, lambda: encode(pcm44, SETTINGS, out, "x")),
            "(a1) of which: verify (2 decodes)": measure(
                args.runs, lambda: [decode_sample_count(out / f"x.{f}", 44100, 2) for f in SETTINGS.formats]
            ),
            "(b1) resample 32k -> 44.1k": measure(args.runs, lambda: resample(pcm32, 32000, 44100)),
            "(b) resample + encode + verify": measure(
                args.runs, lambda: encode(resample(pcm32, 32000, 44100), SETTINGS, out, "y")
            ),
        }
        cache = LocalCache(out / "cache")
        raw_file = out / "raw.f32"
        pcm32.tofile(raw_file)
        raw = cache.put(
            "raw", "r" * 64, {"audio.f32": raw_file}, {"sample_rate": 32000, "channels": 2, "samples": pcm32.shape[1]}
        )
        chain = RenderSettings(SETTINGS, loop_crossfade=2.0, loudness_target=-16.0, true_peak=-1.0)
        runs = iter(range(10**6))
        rows["(c) full chain: render_raw"] = measure(
            args.runs, lambda: render_raw(cache, raw, chain, f"{next(runs):064d}", {})
        )
        rows["(c1) of which: DC removal"] = measure(args.runs, lambda: remove_dc(pcm44, 44100))
        rows["(c2) of which: loop + normalise"] = measure(
            args.runs, lambda: normalise(make_seamless(pcm44, 44100, 2.0).audio, 44100, -16.0, -1.0)
        )
        rows["(c3) of which: measure 2 decoded files"] = measure(
            args.runs, lambda: [measure_file(out / f"x.{f}", 2, 44100) for f in SETTINGS.formats]
        )
        sizes = {p.name: p.stat().st_size for p in sorted(out.glob("x.*"))}

        drums32 = drum_audio(args.seconds, 32000)
        drum_file = out / "drums.f32"
        drums32.tofile(drum_file)
        drum_raw = cache.put(
            "raw",
            "d" * 64,
            {"audio.f32": drum_file},
            {"sample_rate": 32000, "channels": 2, "samples": drums32.shape[1]},
        )
        drums44 = remove_dc(resample(drums32, 32000, 44100), 44100)
        from importer.tempo import analyse

        start = time.perf_counter()
        analyse(drums44, 44100, 4, 90.0)  # librosa and its numba functions load here
        first_call = time.perf_counter() - start
        plain = RenderSettings(SETTINGS, loop_crossfade=2.0, loudness_target=-16.0, true_peak=-1.0)
        tempo = RenderSettings(
            SETTINGS, loop_crossfade=2.0, loudness_target=-16.0, true_peak=-1.0, tempo=True, bpm_hint=90.0
        )
        # Interleaved, so that a change in the machine's load hits both alike.
        d0, d = [], []
        for _ in range(args.runs):
            d0 += measure(1, lambda: render_raw(cache, drum_raw, plain, f"{next(runs):064d}", {}))
            d += measure(1, lambda: render_raw(cache, drum_raw, tempo, f"{next(runs):064d}", {}))
        rows["(d0) drums: render_raw, plain loop"] = d0
        rows["(d) drums: render_raw, tempo + bars"] = d
        rows["(d1) of which: tempo analysis"] = measure(args.runs, lambda: analyse(drums44, 44100, 4, 90.0))

    print(
        f"post chain on {args.seconds:.0f} s of stereo audio, median of {args.runs} runs "
        f"(outputs: {', '.join(f'{k} {v / 1024:.0f} KiB' for k, v in sizes.items())})"
    )
    for label, times in rows.items():
        med = statistics.median(times)
        print(
            f"  {label:<34} median {med:6.3f} s   min {min(times):6.3f}   max {max(times):6.3f}   "
            f"{args.seconds / med:6.1f}x real time"
        )
    d0_med, d_med = (
        statistics.median(rows["(d0) drums: render_raw, plain loop"]),
        statistics.median(rows["(d) drums: render_raw, tempo + bars"]),
    )
    print(
        f"  tempo + bar alignment add {d_med - d0_med:+.3f} s ({100 * (d_med / d0_med - 1):+.1f} %) to a "
        f"{args.seconds:.0f} s render; first analysis in a process: {first_call:.3f} s (librosa + numba load)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
