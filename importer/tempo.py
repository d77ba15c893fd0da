"""Tempo, beats and downbeats measured on rendered audio, with librosa's beat tracker.

MusicGen does not hold the tempo a prompt or ``meta.bpm`` asks for, so loops are cut on the
tempo measured here. The steps:

1. A mono mix at ``ANALYSIS_RATE`` (soxr), its log-mel spectrogram and onset-strength
   envelope (``librosa.feature.melspectrogram``, ``librosa.onset.onset_strength``).
2. A global tempo (``librosa.feature.tempo``; its prior is centred on the declared
   ``meta.bpm`` when there is one) and the beats (``librosa.beat.beat_track``, Ellis'
   dynamic-programming tracker). Where the tracker locked to half or double the declared
   tempo, the grid takes the declared octave (a 170 BPM track is not heard as 85).
3. A straight beat grid fitted to those beats by least squares (beat number -> time): its
   slope is the measured tempo, far finer than the tracker's frame grid, and its phase is
   corrected by ``ONSET_LATENCY`` (the onset envelope peaks a little after an attack).
4. The downbeat: of the ``bar_beats`` phases of the grid, the one whose beats carry the most
   low-band onset strength (kick, bass), the full band breaking ties.
5. A confidence in 0..1: the onset envelope's autocorrelation at one to ``bar_beats`` beat
   periods (a pulse that repeats gives ~0.3-1, noise ~0). Below ``MIN_CONFIDENCE`` the
   tempo is not trusted and loops fall back to the plain crossfade.

librosa is imported only inside ``analyse`` (render time): loading its numba-compiled
functions costs seconds of CPU once per process (see bench/RESULTS.md section 2c).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Rate the analysis runs at (beats need no more than 11 kHz of bandwidth).
ANALYSIS_RATE = 22050
#: Analysis frame hop at ``ANALYSIS_RATE`` (23 ms; the fitted grid is much finer).
HOP = 256
N_FFT = 1024
N_MELS = 64
#: Mel bands counted as the low band for downbeats (below ~150 Hz at 64 bands).
LOW_MELS = 6
#: Seconds by which the onset envelope's peaks follow the attacks that cause them at this
#: frame size (measured on synthetic clicks and drums, tests/test_tempo.py).
ONSET_LATENCY = 0.018
#: Below this pulse confidence the tempo is reported unreliable.
MIN_CONFIDENCE = 0.15
#: Tracked beats needed for a grid.
MIN_BEATS = 8
# A change to what this module measures must bump keys.TEMPO_ANALYSIS_VERSION (render key).


@dataclass(frozen=True)
class Tempo:
    """A straight beat grid: beat ``k`` is at ``first_downbeat + (k - pickup) * 60 / bpm``
    seconds, beats ``0, bar_beats, 2 * bar_beats, ...`` after the first downbeat are downbeats."""

    bpm: float
    first_downbeat: float  # seconds from the start of the analysed audio
    confidence: float
    bar_beats: int

    @property
    def beat_seconds(self) -> float:
        return 60.0 / self.bpm

    @property
    def bar_seconds(self) -> float:
        return self.bar_beats * self.beat_seconds

    def shifted(self, seconds: float) -> Tempo:
        """The same grid seen from a file that starts ``seconds`` later: its first downbeat is
        the earliest downbeat at or after the new start."""
        t = self.first_downbeat - seconds
        bar = self.bar_seconds
        t -= math.floor((t + 1e-9) / bar) * bar  # earliest downbeat >= 0 (within a nanosecond)
        return Tempo(self.bpm, t, self.confidence, self.bar_beats)

    def beats_in(self, seconds: float) -> int:
        """Whole beats of the grid in ``seconds`` of audio from its start (a file whose
        length is a whole number of beats counts exactly that many)."""
        return max(0, math.floor(seconds / self.beat_seconds + 1e-3))

    def index_entry(self, rate: int, duration: float, declared: float | None) -> dict[str, Any]:
        """The index's ``"tempo"`` object for a published file of ``duration`` seconds."""
        return {
            "bpm": round(self.bpm, 3),
            "declared": None if declared is None else float(declared),
            "confidence": round(self.confidence, 3),
            "first_downbeat": {
                "seconds": round(self.first_downbeat, 6),
                "samples": int(round(self.first_downbeat * rate)),
            },
            "beats": self.beats_in(duration),
            "bar_beats": self.bar_beats,
        }


@dataclass(frozen=True)
class Analysis:
    """What ``analyse`` found: a trusted ``tempo``, or ``None`` and the ``reason``; ``beats``
    are the tracker's beat times (seconds), ``measured`` its tempo even when not trusted."""

    tempo: Tempo | None
    reason: str
    beats: np.ndarray
    measured: float | None
    confidence: float


def preload() -> threading.Thread:
    """Load librosa and its numba-compiled functions on a daemon thread (about 5 s of CPU, once
    per process), so that a build can start it when it knows it will render, e.g. while the
    model generates; ``analyse`` then finds them loaded (Python's import lock makes it wait
    for a load in progress rather than start another)."""

    def load() -> None:  # librosa.beat pulls in librosa's onset, feature and core modules
        import librosa.beat
        import librosa.feature  # noqa: F401

    thread = threading.Thread(target=load, name="trackspec-librosa-preload", daemon=True)
    thread.start()
    return thread


def analyse(pcm: np.ndarray, rate: int, bar_beats: int = 4, declared_bpm: float | None = None) -> Analysis:
    """Measure tempo, beats and the first downbeat of ``(channels, n)`` audio at ``rate``."""
    import librosa

    from .audio import resample

    mono = np.asarray(pcm, dtype=np.float32).mean(axis=0, keepdims=True)
    x = resample(mono, rate, ANALYSIS_RATE)[0] if rate != ANALYSIS_RATE else mono[0]
    empty = np.zeros(0)
    if x.size < 4 * ANALYSIS_RATE or not np.any(x):
        return Analysis(None, "too short or silent to measure a tempo", empty, None, 0.0)
    mel = librosa.feature.melspectrogram(y=x, sr=ANALYSIS_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
    db = librosa.power_to_db(mel, ref=np.max)
    env = librosa.onset.onset_strength(S=db, sr=ANALYSIS_RATE, hop_length=HOP, n_fft=N_FFT)
    low = librosa.onset.onset_strength(S=db[:LOW_MELS], sr=ANALYSIS_RATE, hop_length=HOP, n_fft=N_FFT)
    start_bpm = float(declared_bpm) if declared_bpm else 120.0
    # The tempo estimate (an autocorrelation per frame: the costly step) runs on the envelope at
    # half the frame rate; it only seeds the tracker, whose beats the grid is then fitted to.
    coarse = env[: env.size // 2 * 2].reshape(-1, 2).max(axis=1)
    guess = float(
        librosa.feature.tempo(onset_envelope=coarse, sr=ANALYSIS_RATE, hop_length=2 * HOP, start_bpm=start_bpm)[0]
    )
    _, frames = librosa.beat.beat_track(onset_envelope=env, sr=ANALYSIS_RATE, hop_length=HOP, bpm=guess, units="frames")
    frames = np.asarray(frames, dtype=np.int64)
    beats = librosa.frames_to_time(frames, sr=ANALYSIS_RATE, hop_length=HOP)
    if frames.size < MIN_BEATS:
        return Analysis(None, f"only {frames.size} beats found", beats, guess, 0.0)
    period, phase = _fit_grid(_snap(env, frames, beats[1:] - beats[:-1]))
    if declared_bpm:
        # The tracker can lock to half or double the tempo; the declared one says which octave.
        factor = min((0.5, 1.0, 2.0), key=lambda f: abs(math.log(f * 60.0 / period / declared_bpm)))
        if factor != 1.0:
            period /= factor
            grid = phase + period * np.arange(
                math.ceil(-phase / period), (env.size * HOP / ANALYSIS_RATE - phase) / period
            )
            grid_frames = np.clip(np.round(grid * ANALYSIS_RATE / HOP).astype(np.int64), 0, env.size - 1)
            period, phase = _fit_grid(_snap(env, grid_frames, np.full(2, period)))
    bpm = 60.0 / period
    confidence = _pulse_confidence(env, period * ANALYSIS_RATE / HOP, bar_beats)
    if confidence < MIN_CONFIDENCE:
        return Analysis(
            None, f"no steady beat (pulse confidence {confidence:.2f}, under {MIN_CONFIDENCE})", beats, bpm, confidence
        )
    phase -= ONSET_LATENCY
    first = _first_downbeat(env, low, phase, period, bar_beats, beats[0])
    return Analysis(Tempo(bpm, first, confidence, bar_beats), "", beats, bpm, confidence)


def _fit_grid(beats: np.ndarray) -> tuple[float, float]:
    """(period, time of beat 0) of the least-squares straight grid through ``beats``; beat
    numbers come from the median interval, so a skipped beat does not bend the grid."""
    median = float(np.median(np.diff(beats)))
    k = np.round((beats - beats[0]) / median)
    period, phase = np.polyfit(k, beats, 1)
    # One refit without the beats far off the grid (a fill, a missed beat the DP bridged).
    residual = np.abs(beats - (phase + period * k))
    keep = residual < 0.25 * period
    if keep.sum() >= MIN_BEATS and not keep.all():
        period, phase = np.polyfit(k[keep], beats[keep], 1)
    return float(period), float(phase)


def _snap(env: np.ndarray, frames: np.ndarray, intervals: np.ndarray) -> np.ndarray:
    """Beat times moved onto the onset envelope's own peak near each tracked beat, to a
    fraction of a frame (parabolic interpolation). The tracker steps in whole frames of a
    whole-frame period, which at 23 ms frames would bend the fitted tempo by up to 2 %."""
    hop_s = HOP / ANALYSIS_RATE
    reach = max(1, int(0.2 * float(np.median(intervals)) / hop_s))
    times = np.empty(frames.size)
    for i, f in enumerate(frames):
        lo, hi = max(0, f - reach), min(env.size, f + reach + 1)
        p = lo + int(np.argmax(env[lo:hi]))
        offset = 0.0
        if 0 < p < env.size - 1:
            a, b, c = float(env[p - 1]), float(env[p]), float(env[p + 1])
            denominator = a - 2 * b + c
            if denominator < 0:
                offset = 0.5 * (a - c) / denominator
        times[i] = (p + offset) * hop_s
    return times


def _pulse_confidence(env: np.ndarray, lag: float, bar_beats: int) -> float:
    """Mean normalised autocorrelation of the onset envelope at 1..bar_beats beat lags."""
    e = env.astype(np.float64) - env.mean()
    energy = float(np.dot(e, e))
    if energy <= 0:
        return 0.0
    values = []
    for m in range(1, bar_beats + 1):
        d = m * lag
        lo = math.floor(d)
        if lo + 1 >= e.size // 2:
            break
        # Linear interpolation between the two integer lags around m beats; best of +-1 frame
        # (the grid's lag is fractional and the envelope's peaks are a frame wide).
        best = max(_ac(e, lo + j) for j in (-1, 0, 1, 2))
        values.append(best / energy)
    return float(np.clip(np.mean(values), 0.0, 1.0)) if values else 0.0


def _ac(e: np.ndarray, lag: int) -> float:
    return float(np.dot(e[:-lag], e[lag:])) if lag > 0 else float(np.dot(e, e))


def _first_downbeat(
    env: np.ndarray, low: np.ndarray, phase: float, period: float, bar_beats: int, first_beat: float
) -> float:
    """The earliest downbeat of the grid at or after the music's first beat."""
    hop_s = HOP / ANALYSIS_RATE
    n_frames = env.size
    duration = n_frames * hop_s
    k_lo = math.ceil((-phase) / period - 1e-9)
    k_hi = math.floor((duration - phase) / period)
    ks = np.arange(k_lo, k_hi + 1)
    times = phase + ks * period
    frames = np.clip(np.round((times + ONSET_LATENCY) / hop_s).astype(np.int64), 0, n_frames - 1)

    def strength(curve: np.ndarray) -> np.ndarray:
        peak = float(curve.max()) or 1.0
        near = np.maximum(
            curve[frames], np.maximum(curve[np.maximum(frames - 1, 0)], curve[np.minimum(frames + 1, n_frames - 1)])
        )
        return near / peak

    salience = strength(low) + 0.25 * strength(env)  # bass and kick mark the bar; the rest breaks ties
    scores = [float(salience[(ks - p) % bar_beats == 0].mean()) for p in range(bar_beats)]
    best = int(np.argmax(scores))
    downbeats = times[(ks - best) % bar_beats == 0]
    loud = np.flatnonzero((env >= 0.25 * np.percentile(env, 99)) | (low >= 0.25 * np.percentile(low, 99)))
    first_sound = loud[0] * hop_s - ONSET_LATENCY if loud.size else first_beat
    start = min(first_beat, first_sound) - 0.5 * period
    later = downbeats[downbeats >= start]
    return float(later[0] if later.size else downbeats[0])
