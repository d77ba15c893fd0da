"""Post-processing of generated audio as numpy arrays, before it is encoded.

MusicGen produces float32 PCM at its own rate (32 kHz); game engines want the project's
rate (usually 44.1 or 48 kHz). Resampling happens here, in process, with libsoxr, so that
ffmpeg only ever encodes PCM that is already at the target rate and the exact number of
samples every output must decode to is known before encoding (``resampled_length``).

Arrays are ``(channels, n)`` float32 throughout, the layout the generator returns.
"""

from __future__ import annotations

import numpy as np
import soxr

# HQ is libsoxr's 20-bit-precision preset: its error floor (about -120 dB) is already below
# the 16-bit quantisation (-96 dB) and the lossy codecs every output goes through, so VHQ's
# 28 bits would not survive encoding and only cost more time.
_QUALITY = "HQ"


def resampled_length(n: int, from_rate: int, to_rate: int) -> int:
    """How many samples ``resample`` returns for ``n`` input samples.

    Callers need the length before resampling (it is the count every encoded file must
    decode to), so this mirrors libsoxr's own end-of-stream arithmetic exactly:
    ``(uint64_t)(samples_in / io_ratio + .5)`` in doubles, ``io_ratio = from / to``. It is
    neither Python's ``round`` (half-even: 160 samples at 32 kHz -> 44.1 kHz is 220.5, soxr
    gives 221) nor exact rational half-up (120 samples at 24 kHz -> 44.1 kHz is 220.5 too,
    but the inexact double ratio makes soxr give 220).
    """
    return int(n / (from_rate / to_rate) + 0.5)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``(channels, n)`` float32 audio to ``to_rate``.

    Returns a C-contiguous ``(channels, resampled_length(n, from_rate, to_rate))`` float32
    array, so the length promised to the encoder always holds.
    """
    if samples.ndim != 2:
        raise ValueError(f"expected (channels, n) samples, got shape {samples.shape}")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return samples
    expected = resampled_length(samples.shape[1], from_rate, to_rate)
    # soxr wants (n, channels); the transposed view is channel-split memory, which soxr
    # reads directly without an interleaving copy.
    out = soxr.resample(samples.T, from_rate, to_rate, quality=_QUALITY).T
    missing = expected - out.shape[1]
    if abs(missing) > 1:
        raise RuntimeError(f"soxr returned {out.shape[1]} samples, expected {expected}")
    if missing > 0:
        out = np.pad(out, ((0, 0), (0, missing)))
    return np.ascontiguousarray(out[:, :expected], dtype=np.float32)


#: Below hearing and below what any game speaker plays: removing it costs no music.
DC_CUTOFF_HZ = 10.0


def remove_dc(samples: np.ndarray, rate: int) -> np.ndarray:
    """High-pass ``(channels, n)`` audio at ``DC_CUTOFF_HZ`` (2nd-order Butterworth, run
    forwards and backwards, so no phase shift).

    A DC offset or sub-sonic drift is inaudible but takes headroom: it holds the peak up
    while adding no loudness, so normalising would need endless limiting, and it makes a
    loop seam click. Every render removes it first.
    """
    import scipy.signal  # only renders pay for scipy

    if samples.shape[1] < 64:  # too short to filter; the mean is all the DC there is
        return np.ascontiguousarray(samples - samples.mean(axis=1, keepdims=True), dtype=np.float32)
    sos = scipy.signal.butter(2, DC_CUTOFF_HZ, btype="highpass", fs=rate, output="sos")
    return np.ascontiguousarray(scipy.signal.sosfiltfilt(sos, samples, axis=1), dtype=np.float32)
