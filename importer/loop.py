"""Seamless loops: crossfade a track's tail into its head so the file's end flows into its start.

Game engines loop a music file by jumping from its last sample back to its first (or to a
loop start). A generated track has no reason to be continuous across that jump, so without
help every loop point clicks. ``make_seamless`` fixes that in the buffer, before encoding:

* ``C`` crossfade samples; ``head = audio[:, :C]``, ``tail = audio[:, N-C:]``.
* The result is ``audio[:, C:N]`` (``N - C`` samples), whose last ``C`` samples (the tail)
  are replaced by ``tail * cos(pi/2 t) + head * sin(pi/2 t)``, ``t`` rising 0 -> 1.
* The first crossfaded sample is exactly the original ``audio[N-C]`` (it follows
  ``audio[N-C-1]``, as in the original) and the last is exactly ``audio[C-1]``, which is
  what precedes the result's first sample ``audio[C]`` in the original. Both joins are
  the track's own sample-to-sample steps.

Equal power (sin/cos, ``g_in**2 + g_out**2 == 1``) keeps the loudness of uncorrelated
material (which a tail and a head of music are) steady through the fade; correlated
material can rise by up to 3 dB mid-fade, so loudness normalisation and the true-peak
limiter must run after this.

Run it at the output rate (after resampling): the loop points are samples of the published
file, and the published length is exactly ``N - C``.

**Bar-aligned loops** (``bar_loop``, used when the tempo is measured): the loop is the region
``[S, E)`` of the audio, ``S`` a downbeat and ``E - S`` a whole number of bars at the measured
tempo. Its last ``C`` samples are crossfaded (equal power, as above) with the ``C`` samples
just before ``S``, which are at the same place in the bar: the file's last sample is then
``audio[S - 1]``, followed at the wrap by ``audio[S]``, so the seam is the track's own step
and the beat grid runs on across it. The audio before ``S`` is either dropped (the loop is
the whole file, ``LOOPSTART`` 0) or kept as an intro played once (``LOOPSTART`` = ``S``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The seam check's threshold: this percentile of the track's own |x[n+1] - x[n]|.
SEAM_PERCENTILE = 99.0


@dataclass(frozen=True)
class LoopResult:
    """A looped buffer and its loop points, in samples at ``rate``.

    The loop is the whole file: ``start`` is 0 and ``length`` is the file's sample count,
    which is what LOOPSTART/LOOPLENGTH and the index record.
    """

    audio: np.ndarray
    rate: int
    start: int
    length: int
    crossfade: int
    #: Whole bars in the loop and the tempo they were counted at; ``None``: not bar-aligned.
    bars: int | None = None
    bpm: float | None = None
    #: Samples of the input dropped before the file's first sample.
    trimmed: int = 0

    @property
    def start_seconds(self) -> float:
        """Godot's ``loop_offset`` is in seconds."""
        return self.start / self.rate

    def index_entry(self) -> dict[str, int | float | None]:
        """The index's ``"loop"`` object."""
        return {
            "start": self.start,
            "length": self.length,
            "start_seconds": self.start_seconds,
            "bars": self.bars,
            "bpm": None if self.bpm is None else round(self.bpm, 3),
        }


@dataclass(frozen=True)
class SeamCheck:
    """The loop seam measured per channel: ``jump`` = |last - first|, ``limit`` = the
    ``SEAM_PERCENTILE`` of the channel's own sample-to-sample steps."""

    jump: np.ndarray
    limit: np.ndarray

    @property
    def ok(self) -> bool:
        return bool(np.all(self.jump <= self.limit))


def crossfade_samples(crossfade_seconds: float, rate: int, n: int) -> int:
    """The crossfade in samples at ``rate``, checked against a track of ``n`` samples.

    It must be shorter than half the track: the head and the tail it blends must not
    overlap, and the loop must keep more than it fades.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if not math.isfinite(crossfade_seconds) or crossfade_seconds < 0:
        raise ValueError(f"the loop crossfade must be 0 or more seconds, got {crossfade_seconds!r}")
    c = round(crossfade_seconds * rate)
    if crossfade_seconds > 0 and c < 2:
        raise ValueError(
            f"a loop crossfade of {crossfade_seconds} s is under 2 samples at {rate} Hz; "
            "use 0 for no crossfade or a longer one"
        )
    if 2 * c >= n:
        raise ValueError(
            f"the loop crossfade ({crossfade_seconds:g} s) must be shorter than half the track "
            f"({n / rate:g} s); shorten the crossfade or lengthen the track"
        )
    return c


def make_seamless(audio: np.ndarray, rate: int, crossfade_seconds: float) -> LoopResult:
    """Return ``(channels, N - C)`` float32 audio whose end flows into its start.

    ``crossfade_seconds == 0`` loops the buffer as it is (for material that already loops).
    """
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"expected non-empty (channels, n) audio, got shape {audio.shape}")
    n = audio.shape[1]
    c = crossfade_samples(crossfade_seconds, rate, n)
    audio = np.asarray(audio, dtype=np.float32)
    if c == 0:
        out = np.array(audio, dtype=np.float32, order="C")
        return LoopResult(out, rate, 0, n, 0)
    # t runs 0..1 inclusive, so both ends of the fade are exact original samples.
    t = np.linspace(0.0, 1.0, c, dtype=np.float64)
    fade_in = np.sin(0.5 * np.pi * t)
    fade_out = np.cos(0.5 * np.pi * t)
    fade_in[-1], fade_out[-1] = 1.0, 0.0  # cos(pi/2) is 6e-17, not 0
    head = audio[:, :c].astype(np.float64)
    tail = audio[:, n - c :].astype(np.float64)
    out = np.empty((audio.shape[0], n - c), dtype=np.float32)
    out[:, : n - 2 * c] = audio[:, c : n - c]
    out[:, n - 2 * c :] = tail * fade_out + head * fade_in
    return LoopResult(out, rate, 0, n - c, c, trimmed=c)


class LoopDoesNotFit(ValueError):
    """The loop asked for does not fit the audio (too many bars, a start too late)."""


def bar_loop(
    audio: np.ndarray,
    rate: int,
    *,
    bpm: float,
    first_downbeat: float,
    bar_beats: int,
    crossfade_seconds: float | None,
    bars: int | None,
    start: int | float | str | None,
) -> LoopResult:
    """A loop of whole bars starting on a downbeat (see the module docstring).

    ``first_downbeat`` (seconds) and ``bpm`` describe the measured grid. ``start``: ``None``
    loops from the first downbeat with room for the crossfade before it, dropping what comes
    before; ``"auto"`` the same downbeat, keeping the audio before it as an intro; an ``int``
    that many bars after the first downbeat; a ``float`` the downbeat nearest that many seconds
    (both keep the intro). ``bars``: whole bars in the loop, ``None`` for as many as fit.
    ``crossfade_seconds``: ``None`` for one bar; it is shortened to the audio before the loop
    start where that is less. Raises ``LoopDoesNotFit``.
    """
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"expected non-empty (channels, n) audio, got shape {audio.shape}")
    if not (math.isfinite(bpm) and bpm > 0) or bar_beats < 1:
        raise ValueError(f"bad tempo: {bpm!r} BPM, {bar_beats!r} beats per bar")
    n = audio.shape[1]
    bar = bar_beats * 60.0 / bpm  # seconds
    fade = bar if crossfade_seconds is None else float(crossfade_seconds)
    c = round(fade * rate)
    downbeat = first_downbeat - math.floor(first_downbeat / bar) * bar  # earliest one >= 0
    skip = round((first_downbeat - downbeat) / bar)  # downbeats before the first one
    if start is None or start == "auto":
        j = max(0, math.ceil((c / rate - downbeat) / bar - 1e-9))
        j = max(j, skip)
    elif isinstance(start, int):
        j = skip + start
    else:
        j = max(0, round((float(start) - downbeat) / bar))
    s = round((downbeat + j * bar) * rate)
    if s >= n:
        raise LoopDoesNotFit(f"the loop start ({s / rate:.2f} s) is past the end of the track ({n / rate:.2f} s)")
    c = min(c, s)
    fit = math.floor((n - s) / (bar * rate) + 1e-9)
    if bars is None:
        bars = fit
    elif bars > fit:
        raise LoopDoesNotFit(
            f"{bars} bars of {bar:.3f} s ({bpm:.2f} BPM, {bar_beats}/bar) from the loop start "
            f"at {s / rate:.2f} s need {bars * bar:.2f} s; the track has {(n - s) / rate:.2f} s "
            f"after it (at most {fit} bars fit)"
        )
    if bars < 1:
        raise LoopDoesNotFit(
            f"not one whole bar ({bar:.2f} s at {bpm:.2f} BPM) fits after the loop start at {s / rate:.2f} s"
        )
    length = round(bars * bar * rate)
    if c >= length:
        c = length - 1
    e = s + length
    keep_intro = start is not None
    first = 0 if keep_intro else s
    x = np.asarray(audio, dtype=np.float32)
    out = np.array(x[:, first:e], dtype=np.float32, order="C")
    if c >= 2:
        t = np.linspace(0.0, 1.0, c, dtype=np.float64)
        fade_in = np.sin(0.5 * np.pi * t)
        fade_out = np.cos(0.5 * np.pi * t)
        fade_in[-1], fade_out[-1] = 1.0, 0.0
        tail = x[:, e - c : e].astype(np.float64)
        before = x[:, s - c : s].astype(np.float64)
        out[:, out.shape[1] - c :] = tail * fade_out + before * fade_in
    return LoopResult(out, rate, s - first, length, c if c >= 2 else 0, bars=bars, bpm=bpm, trimmed=first)


def seam_check(audio: np.ndarray, start: int = 0) -> SeamCheck:
    """Measure the jump a looping player makes from the last sample to the loop start
    (sample ``start``, LOOPSTART).

    Meant for decoded output files: the seam is audible when that jump is larger than
    almost every step the music itself makes.
    """
    if audio.ndim != 2 or audio.shape[1] < 2:
        raise ValueError(f"expected (channels, n >= 2) audio, got shape {audio.shape}")
    if not 0 <= start < audio.shape[1]:
        raise ValueError(f"loop start {start} is outside the {audio.shape[1]} samples")
    x = audio.astype(np.float64)
    jump = np.abs(x[:, -1] - x[:, start])
    limit = np.percentile(np.abs(np.diff(x, axis=1)), SEAM_PERCENTILE, axis=1)
    return SeamCheck(jump, limit)
