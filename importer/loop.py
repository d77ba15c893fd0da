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

    @property
    def start_seconds(self) -> float:
        """Godot's ``loop_offset`` is in seconds."""
        return self.start / self.rate

    def index_entry(self) -> dict[str, int | float]:
        """The index's ``"loop"`` object."""
        return {"start": self.start, "length": self.length, "start_seconds": self.start_seconds}


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
    return LoopResult(out, rate, 0, n - c, c)


def seam_check(audio: np.ndarray) -> SeamCheck:
    """Measure the jump a looping player makes from the last sample to the first.

    Meant for decoded output files: the seam is audible when that jump is larger than
    almost every step the music itself makes.
    """
    if audio.ndim != 2 or audio.shape[1] < 2:
        raise ValueError(f"expected (channels, n >= 2) audio, got shape {audio.shape}")
    x = audio.astype(np.float64)
    jump = np.abs(x[:, -1] - x[:, 0])
    limit = np.percentile(np.abs(np.diff(x, axis=1)), SEAM_PERCENTILE, axis=1)
    return SeamCheck(jump, limit)
