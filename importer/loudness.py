"""Loudness normalisation: every track at its profile's loudness, under a true-peak ceiling.

A game plays generated tracks next to each other and next to hand-made assets, so each one is
brought to a target integrated loudness (ITU-R BS.1770-4, in LUFS) chosen by a profile, with
its true peak (the peak of the reconstructed waveform, in dBTP) kept under a ceiling so that
the codecs and the player's DAC do not clip. Where plain gain would break the ceiling, a
look-ahead true-peak limiter takes the peaks down and the gain is corrected until the loudness
holds again.

Arrays are ``(channels, n)`` float32 like the rest of the pipeline (``importer.audio``);
mono and stereo only (BS.1770 weights both channels 1.0; surround needs its own weights).

The numbers that matter are those of the decoded files: lossy encoding moves the true peak
(see ``DEFAULT_MARGIN_DB``), so an integrator encodes, measures the decoded files with
``measure_file`` and, if a file breaks the ceiling, calls ``normalise`` again with a larger
``margin_db``. ``normalise`` is deterministic and cheap enough for that: for 60 s of 44.1 kHz
stereo about 0.25-0.3 s where gain is enough and 0.55-0.7 s where it limits (one core, on a
busy machine).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.ndimage
import scipy.signal
import soxr

#: EBU R 128 / AES streaming recommendation for lossy delivery.
DEFAULT_CEILING_DBTP = -1.0
#: Headroom kept below the ceiling by ``normalise``. Vorbis q6 and MP3 V4 (LAME) move the
#: decoded true peak, most on limited material whose peaks sit right at the limit: measured
#: on band-limited test signals (generated at 32 kHz, resampled to 44.1 kHz like every
#: track), up to 0.34 dB for Vorbis and 0.44 dB for MP3. 0.75 dB leaves about 0.3 dB to
#: spare; a file that still ends up over the ceiling is re-normalised with a larger margin
#: by the caller (the overshoot it measured plus a little).
DEFAULT_MARGIN_DB = 0.75

#: Oversampling factor for true peak (BS.1770-4 Annex 2: 4x at 48 kHz and below).
OVERSAMPLING = 4
#: ``normalise`` stops when the loudness is this close to the target (the promise is 0.1 LU).
LOUDNESS_TOLERANCE_LU = 0.02
#: Limiter look-ahead, which is also its attack time (a linear ramp in dB, ending at the peak).
LOOKAHEAD_S = 0.005
#: Limiter release time constant (exponential in dB): short enough to keep the loudness a
#: transient takes away small, long enough not to modulate low notes.
RELEASE_S = 0.08

#: ``normalise`` refuses to limit by more than this: past it the result is no longer music.
MAX_LIMITING_DB = 24.0

_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = -10.0
_MAX_ITERATIONS = 12
_MAX_ROUNDS = 4
_SAFETY_DB = 0.01


@dataclass(frozen=True)
class LoudnessResult:
    """What ``normalise`` did, for the asset index: all loudness in LUFS, peaks in dBTP.

    ``gain_db`` is the static gain; ``method`` is ``"gain"`` (that gain alone), ``"limited"``
    (that gain and the true-peak limiter, which took up to ``limited_db`` off the peaks) or
    ``"none"`` (silent or under 0.4 s: nothing to measure, returned unchanged).
    """

    input_lufs: float
    input_true_peak_dbtp: float
    gain_db: float
    method: str
    lufs: float
    true_peak_dbtp: float
    limited_db: float = 0.0


def k_weighting_sos(rate: int) -> np.ndarray:
    """The BS.1770 K-weighting as second-order sections for any sample rate.

    The standard gives coefficients for 48 kHz only. As in libebur128 (and pyloudnorm's
    "DeMan" filters), both stages are re-derived with the bilinear transform from the
    analogue prototypes that reproduce those coefficients exactly: a high shelf (+4 dB,
    1682 Hz) modelling the head, then the RLB high-pass (38 Hz).
    """
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / q + k * k) / a0,
    ]
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    return np.array([shelf, highpass])


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4), or -inf for silence and under 0.4 s.

    K-weighting, mean square over 400 ms blocks every 100 ms (libebur128's block grid:
    blocks start at multiples of ``round(rate / 10)`` samples; a last partial hop is
    ignored), absolute gate -70 LUFS, relative gate -10 LU.
    """
    return _gated_loudness(_weighted_power(_check(audio), rate), rate)


def true_peak(audio: np.ndarray, rate: int) -> float:
    """True peak in dBTP: the largest magnitude of the 4x oversampled signal (or -inf).

    Oversampled with libsoxr (already a dependency; HQ, linear phase) rather than the
    48-tap FIR of BS.1770 Annex 2 or scipy's ``resample_poly``: its anti-imaging filter is
    much sharper than the Annex's, and it is about 5x faster than ``resample_poly`` (0.13 s
    against 0.7 s for 60 s of stereo). The original samples count too, since a non-Nyquist
    interpolation filter does not pass them through exactly. Like any 4x meter it can read
    a peak that falls between its points low, by up to ``20 log10(cos(pi f / (4 rate)))``:
    0.35 dB for 16 kHz content at 44.1 kHz (EBU Tech 3341 allows -0.4 dB).
    """
    audio = _check(audio)
    return _peak(audio, _oversample(audio, rate))


def normalise(
    audio: np.ndarray,
    rate: int,
    target_lufs: float,
    ceiling_dbtp: float = DEFAULT_CEILING_DBTP,
    margin_db: float = DEFAULT_MARGIN_DB,
) -> tuple[np.ndarray, LoudnessResult]:
    """Bring ``audio`` to ``target_lufs`` (within 0.1 LU) with its true peak at most
    ``ceiling_dbtp - margin_db``; returns a new float32 buffer and what was done.

    Plain gain where that keeps the peak under the limit; otherwise the gain and a
    look-ahead true-peak limiter (``_Control``, ``_limiter``), with the gain searched until
    the limited audio measures at the target. ``margin_db`` is headroom for the codecs,
    which move the true peak after this (see ``DEFAULT_MARGIN_DB``). Silence and audio
    under 0.4 s come back unchanged (method ``"none"``). Deterministic: the same input and
    arguments give the same output. Raises ``ValueError`` where the target cannot be
    reached under the ceiling without limiting by more than ``MAX_LIMITING_DB``.
    """
    audio = np.asarray(_check(audio), dtype=np.float32)
    for name, value in (("target_lufs", target_lufs), ("ceiling_dbtp", ceiling_dbtp), ("margin_db", margin_db)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if margin_db < 0:
        raise ValueError(f"margin_db must be >= 0, got {margin_db!r}")
    limit_db = ceiling_dbtp - margin_db

    power = _weighted_power(audio, rate)
    input_lufs = _gated_loudness(power, rate)
    up = _oversample(audio, rate)
    input_peak = _peak(audio, up)
    if not math.isfinite(input_lufs):
        return audio.copy(), LoudnessResult(input_lufs, input_peak, 0.0, "none", input_lufs, input_peak)

    # A constant gain scales the K-weighted power exactly; only the -70 LUFS gate letting
    # blocks in or out can make the loudness move by other than the gain, hence the loop.
    gain_db = target_lufs - input_lufs
    for _ in range(_MAX_ITERATIONS):
        lufs = _gated_loudness(power * 10.0 ** (gain_db / 10.0), rate)
        if abs(target_lufs - lufs) <= LOUDNESS_TOLERANCE_LU:
            break
        gain_db += target_lufs - lufs
    if input_peak + gain_db <= limit_db and abs(target_lufs - lufs) <= LOUDNESS_TOLERANCE_LU:
        out = (audio * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
        return out, LoudnessResult(input_lufs, input_peak, gain_db, "gain", lufs, input_peak + gain_db)

    # Limited. Each try predicts the loudness from the input's K-weighted power times the
    # limiter's squared gain per control block (cheap; exact but for the K-filter's memory
    # around gain changes), searches the gain for the target on that prediction, then
    # measures the real output and aims the next try off by the prediction's error.
    # ``headroom`` is for the rounding to float32 and for the gain changing between samples
    # moving the peaks between them a little; it grows if the output still peaks over.
    control = _Control(_peak_envelope(audio, up), power, rate)
    del up
    aim, headroom = target_lufs, _SAFETY_DB
    for _ in range(_MAX_ROUNDS):
        limit = limit_db - headroom
        gain_db = _search(functools.partial(control.loudness, limit_db=limit), aim, gain_db)
        gains, limited_db = control.gain(gain_db, limit)
        if limited_db > MAX_LIMITING_DB:
            raise ValueError(
                f"reaching {target_lufs} LUFS under {limit_db:.2f} dBTP takes {limited_db:.1f} dB of "
                f"limiting (at most {MAX_LIMITING_DB} allowed); lower the target or raise the ceiling"
            )
        out = (audio * gains.astype(np.float32)).astype(np.float32)
        lufs = integrated_loudness(out, rate)
        if abs(target_lufs - lufs) > LOUDNESS_TOLERANCE_LU:
            aim += target_lufs - lufs
            continue
        peak = true_peak(out, rate)
        if peak <= limit_db:
            return out, LoudnessResult(input_lufs, input_peak, gain_db, "limited", lufs, peak, limited_db)
        headroom += peak - limit_db + _SAFETY_DB
    raise ValueError(f"could not bring the audio to {target_lufs} LUFS under {limit_db:.2f} dBTP")


def measure_file(path: Path, channels: int, rate: int = 44100) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of an encoded file, decoded in full
    to float32 at ``rate`` with ``channels`` channels by the encoder's own ffmpeg."""
    from importer.encode import decode_pcm  # ffmpeg lookup and decode command, reused

    pcm = decode_pcm(Path(path), rate, channels)
    return integrated_loudness(pcm, rate), true_peak(pcm, rate)


class _Control:
    """The limiter, computed per control block of about 1 ms rather than per sample.

    The input's peak envelope and K-weighted power are reduced once per block (the peak
    conservatively: the largest within one block either side); each try of a gain then
    costs a few operations on 1/40 of the samples. Blocks divide the 100 ms loudness hop,
    so the predicted loudness uses the same gating grid as ``integrated_loudness``.
    """

    def __init__(self, envelope: np.ndarray, power: np.ndarray, rate: int) -> None:
        hop = (rate + 5) // 10
        size = next(d for d in range(max(1, rate // 1000), 0, -1) if hop % d == 0)
        blocks = envelope.size // size
        peaks = envelope[: blocks * size].reshape(blocks, size).max(axis=1)
        if blocks * size < envelope.size:  # the last partial block rides on the last block
            peaks[-1] = max(peaks[-1], envelope[blocks * size :].max())
        self.peak_db = _db_array(scipy.ndimage.maximum_filter1d(peaks, 3, mode="constant", cval=0.0))
        self.energy = power[: blocks * size].reshape(blocks, size).sum(axis=1)
        self.size, self.n, self.hop = size, envelope.size, hop
        self.lookahead = max(1, round(LOOKAHEAD_S * rate / size))
        self.release = size / (RELEASE_S * rate)

    def attenuation(self, gain_db: float, limit_db: float) -> np.ndarray:
        """Per block, the limiter's attenuation in dB for ``gain_db``; see ``_limiter``."""
        need = np.maximum(self.peak_db + (gain_db - limit_db), 0.0)
        return _limiter(need, self.lookahead, self.release)

    def loudness(self, gain_db: float, limit_db: float) -> float:
        """Predicted loudness of the input with ``gain_db`` and the limiter."""
        energy = self.energy * np.power(10.0, (gain_db - self.attenuation(gain_db, limit_db)) / 10.0)
        per_hop = self.hop // self.size
        hops = energy.size // per_hop
        return _gate(energy[: hops * per_hop].reshape(hops, per_hop).sum(axis=1), self.hop)

    def gain(self, gain_db: float, limit_db: float) -> tuple[np.ndarray, float]:
        """Per-sample linear gain (blocks' gains interpolated linearly between block
        centres) and the largest attenuation in dB."""
        attenuation = self.attenuation(gain_db, limit_db)
        block_gain = np.power(10.0, (gain_db - attenuation) / 20.0)
        centres = np.arange(block_gain.size) * self.size + (self.size - 1) / 2
        return np.interp(np.arange(self.n), centres, block_gain), float(attenuation.max())


def _limiter(need: np.ndarray, lookahead: int, release: float) -> np.ndarray:
    """Attenuation in dB that is at least ``need`` everywhere, with ramps rather than steps.

    A running maximum over the next ``lookahead`` values starts each reduction that far
    ahead of its peak; the release is a peak hold with exponential decay (``release`` per
    value), ``max_k(held[k] * exp(-release * (i - k)))``, computed as a running maximum in
    the log domain; a moving average over the past ``lookahead`` values then turns the
    steps into ramps. Every value averaged for ``i`` is at least ``need[i]`` (each
    look-ahead window that ends in it contains ``i``), so the smoothing never undercuts a
    peak. A linear interpolation between two values that both hold is a gain that holds.
    """
    if not need.any():
        return need
    held = scipy.ndimage.maximum_filter1d(need, lookahead, mode="constant", cval=0.0, origin=-(lookahead // 2))
    ramp = np.arange(held.size) * release
    with np.errstate(divide="ignore"):
        decayed = np.exp(np.maximum.accumulate(np.log(held) + ramp) - ramp)
    smooth = scipy.ndimage.uniform_filter1d(decayed, lookahead, mode="nearest", origin=(lookahead - 1) // 2)
    return np.maximum(smooth, need)  # a guard against rounding in the moving average


def _search(predict: Callable[[float], float], target: float, gain_db: float) -> float:
    """The gain whose predicted loudness is ``target``: secant steps, kept inside the
    bracket found so far and bisecting where they leave it (the prediction never falls as
    the gain rises, and rises by at most 1 LU per dB)."""
    low, high = -math.inf, math.inf
    previous: tuple[float, float] | None = None
    for _ in range(40):
        lufs = predict(gain_db)
        error = target - lufs
        if abs(error) <= LOUDNESS_TOLERANCE_LU / 10:
            break
        if error > 0:
            low = max(low, gain_db)
        else:
            high = min(high, gain_db)
        slope = 1.0
        if previous is not None and previous[0] != gain_db:
            slope = min(max((lufs - previous[1]) / (gain_db - previous[0]), 0.02), 1.0)
        previous = (gain_db, lufs)
        step = gain_db + error / slope
        if not low < step < high:
            step = (low + high) / 2 if math.isfinite(low) and math.isfinite(high) else gain_db + error
        gain_db = step
    return gain_db


def _weighted_power(audio: np.ndarray, rate: int) -> np.ndarray:
    """Per sample, the K-weighted power summed over channels (weights 1.0: mono, stereo)."""
    weighted = scipy.signal.sosfilt(k_weighting_sos(rate), audio.astype(np.float64), axis=1)
    np.square(weighted, out=weighted)
    return weighted.sum(axis=0)


def _gated_loudness(power: np.ndarray, rate: int) -> float:
    """BS.1770 gating over per-sample K-weighted ``power``, on libebur128's block grid."""
    hop = (rate + 5) // 10
    hops = power.size // hop
    return _gate(power[: hops * hop].reshape(hops, hop).sum(axis=1), hop)


def _gate(hop_energy: np.ndarray, hop: int) -> float:
    """Loudness from the energy of each 100 ms hop of ``hop`` samples: 400 ms blocks of four
    hops, absolute gate, then relative gate; -inf where no block passes."""
    if hop_energy.size < 4:
        return -math.inf
    e = hop_energy
    blocks = (e[:-3] + e[1:-2] + e[2:-1] + e[3:]) / (4 * hop)
    gated = blocks[blocks >= _power(_ABSOLUTE_GATE_LUFS)]
    if gated.size == 0:
        return -math.inf
    gated = gated[gated > gated.mean() * 10.0 ** (_RELATIVE_GATE_LU / 10.0)]
    return _lufs(float(gated.mean())) if gated.size else -math.inf


def _oversample(audio: np.ndarray, rate: int) -> np.ndarray:
    """``audio`` at 4x the rate, ``(4 * n, channels)``, sample ``4 * i`` aligned with ``i``."""
    n = audio.shape[1]
    # (n, channels) as soxr wants: the transposed view is read as channel-split, no copy.
    up = soxr.resample(audio.T, rate, OVERSAMPLING * rate, quality="HQ")
    if up.shape[0] < OVERSAMPLING * n:
        up = np.pad(up, ((0, OVERSAMPLING * n - up.shape[0]), (0, 0)))
    return up[: OVERSAMPLING * n]


def _peak(audio: np.ndarray, up: np.ndarray) -> float:
    """True peak in dBTP from the oversampled audio, the original samples included (a
    non-Nyquist interpolation filter does not pass them through exactly)."""
    peak = max(float(up.max(initial=0.0)), -float(up.min(initial=0.0)), float(np.abs(audio).max(initial=0.0)))
    return _db(peak)


def _peak_envelope(audio: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Per sample ``i``, the largest magnitude across channels of the oversampled audio
    from ``i`` to just before ``i + 1``, the original sample included.

    Maxima are taken column by column: numpy reduces a short last axis very slowly.
    """
    n = audio.shape[1]
    envelope = np.abs(audio[0])
    for channel in audio[1:]:
        np.maximum(envelope, np.abs(channel), out=envelope)
    for c in range(up.shape[1]):  # soxr's output may be strided: reshape each channel
        phases = up[:, c].reshape(n, OVERSAMPLING)
        for k in range(OVERSAMPLING):
            np.maximum(envelope, np.abs(phases[:, k]), out=envelope)
    return envelope


def _check(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise ValueError(f"expected (channels, n) audio with 1 or 2 channels, got shape {audio.shape}")
    return audio


def _power(lufs: float) -> float:
    return 10.0 ** ((lufs + 0.691) / 10.0)


def _lufs(power: float) -> float:
    return -0.691 + 10.0 * math.log10(power) if power > 0 else -math.inf


def _db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf


def _db_array(amplitude: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(amplitude)
