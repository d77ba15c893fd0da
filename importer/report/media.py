"""The report's pictures and clips: waveform and spectrogram PNGs, loop-seam clips.

Each is named by the sha256 of the audio it shows and written once (temp file, then
rename), so writing the report again costs only what changed; what the page no longer
uses is removed at the end. matplotlib draws without a display (Agg, no pyplot).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..encode import EncodeSettings, decode_pcm, encode
from ..fsutil import temp_path_for
from .collect import Audio, TakeView, TrackView

#: Seconds of the track's end and of its start that the seam clip plays, end first.
SEAM_SECONDS = 2.0
WAVE_COLOUR, LOOP_COLOUR = "#4cc9f0", "#f72585"


class Media:
    def __init__(self, out: Path):
        self.out = out
        self.used: set[Path] = set()
        for folder in ("img", "audio"):
            (out / folder).mkdir(parents=True, exist_ok=True)

    def prepare_track(self, track: TrackView) -> None:
        """Images and seam clip of the published audio; the player plays the published file."""
        if track.audio is None:
            return
        track.audio.src = os.path.relpath(track.audio.path, self.out).replace(os.sep, "/")
        self._draw(track.audio)

    def prepare_take(self, track: TrackView, take: TakeView) -> None:
        """A take lives in the cache, outside the repo: its file is copied beside the page."""
        audio = take.audio
        if audio is None:
            return
        copy = self.out / "audio" / f"take-{audio.sha256[:16]}{audio.path.suffix}"
        if not copy.exists():
            _write_via_temp(copy, lambda tmp: shutil.copyfile(audio.path, tmp))
        self.used.add(copy)
        audio.src = f"audio/{copy.name}"
        self._draw(audio)

    # ------------------------------------------------------------------ drawing
    def _draw(self, audio: Audio) -> None:
        stem = audio.sha256[:16]
        wave, spec, seam = (
            self.out / "img" / f"{stem}-wave.png",
            self.out / "img" / f"{stem}-spec.png",
            self.out / "audio" / f"{stem}-seam.ogg",
        )
        self.used |= {wave, spec, seam}
        audio.waveform, audio.spectrogram, audio.seam = (f"img/{wave.name}", f"img/{spec.name}", f"audio/{seam.name}")
        audio.seam_duration = (
            2
            * seam_span(round(audio.duration * audio.sample_rate), audio.sample_rate, audio.loop)[2]
            / audio.sample_rate
        )
        if wave.exists() and spec.exists() and seam.exists():
            return
        pcm = decode_pcm(audio.path, audio.sample_rate, audio.channels)
        mono = pcm.mean(axis=0)
        if not wave.exists():
            _write_via_temp(wave, lambda tmp: draw_waveform(mono, audio.sample_rate, audio.loop, tmp))
        if not spec.exists():
            _write_via_temp(spec, lambda tmp: draw_spectrogram(mono, audio.sample_rate, tmp))
        if not seam.exists():
            write_seam(pcm, audio.sample_rate, audio.loop, seam)


def _write_via_temp(target: Path, write) -> None:
    tmp = temp_path_for(target)
    tmp = tmp.with_name(tmp.name + target.suffix)  # matplotlib picks the format by suffix
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, facecolor="#16161d")
    axes = figure.add_axes((0.04, 0.18, 0.95, 0.78), facecolor="#16161d")
    axes.tick_params(colors="#aaaabb", labelsize=7)
    for spine in axes.spines.values():
        spine.set_color("#333344")
    return figure, axes


def draw_waveform(mono: np.ndarray, rate: int, loop: dict | None, target: Path, columns: int = 1200) -> None:
    """Min/max envelope per pixel column (a plot of every sample would take seconds), with
    the loop region shaded and its start and end marked."""
    figure, axes = _figure(10, 1.6)
    n = mono.shape[0]
    per = max(1, n // columns)
    usable = mono[: (n // per) * per].reshape(-1, per)
    times = (np.arange(usable.shape[0]) * per + per / 2) / rate
    axes.fill_between(times, usable.min(axis=1), usable.max(axis=1), color=WAVE_COLOUR, linewidth=0)
    axes.set_xlim(0, n / rate)
    axes.set_ylim(-1, 1)
    axes.set_yticks([])
    if loop:
        start, end = loop["start"] / rate, (loop["start"] + loop["length"]) / rate
        axes.axvspan(start, end, color=LOOP_COLOUR, alpha=0.08)
        for x, label in ((start, "loop start"), (end, "loop end")):
            axes.axvline(x, color=LOOP_COLOUR, linewidth=1.2)
            axes.annotate(
                label,
                (x, 0.9),
                color=LOOP_COLOUR,
                fontsize=7,
                ha="left" if x == start else "right",
                xytext=(3 if x == start else -3, 0),
                textcoords="offset points",
            )
    figure.savefig(target, format="png", facecolor=figure.get_facecolor())


def draw_spectrogram(mono: np.ndarray, rate: int, target: Path) -> None:
    figure, axes = _figure(10, 1.8)
    axes.specgram(mono, NFFT=1024, Fs=rate, noverlap=512, cmap="magma", scale="dB", vmin=-120)
    axes.set_ylim(0, min(rate / 2, 16000))
    axes.set_yticks([0, 4000, 8000, 12000, 16000])
    axes.set_yticklabels(["0", "4k", "8k", "12k", "16k"])
    figure.savefig(target, format="png", facecolor=figure.get_facecolor())


def seam_span(samples: int, rate: int, loop: dict | None) -> tuple[int, int, int]:
    """(loop start, loop end, samples taken from each side of the seam)."""
    start = int(loop["start"]) if loop else 0
    end = start + int(loop["length"]) if loop else samples
    return start, end, min(int(SEAM_SECONDS * rate), (end - start) // 2)


def write_seam(pcm: np.ndarray, rate: int, loop: dict | None, target: Path) -> None:
    """The last ``SEAM_SECONDS`` of the loop flowing into its first: what a game plays at the wrap."""
    start, end, span = seam_span(pcm.shape[1], rate, loop)
    clip = np.concatenate([pcm[:, end - span : end], pcm[:, start : start + span]], axis=1)
    encode(
        np.ascontiguousarray(clip, dtype=np.float32),
        EncodeSettings(formats=("ogg",), sample_rate=rate),
        target.parent,
        target.stem,
    )
