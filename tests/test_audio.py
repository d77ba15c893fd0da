"""importer.audio: resampling lengths agree with soxr exactly, and the audio survives."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from importer.audio import resample, resampled_length

RATE_PAIRS = [
    (32000, 44100),
    (32000, 48000),
    (24000, 44100),
    (48000, 44100),
    (44100, 48000),
    (16000, 44100),
    (44100, 22050),
    (22050, 44100),
    (44100, 32000),
    (44100, 44101),
]


def _half_cases(from_rate: int, to_rate: int, limit: int) -> list[int]:
    """Lengths whose exact output length ends in .5, where rounding rules differ."""
    return [n for n in range(1, 20_000) if (2 * n * to_rate) % (2 * from_rate) == from_rate][:limit]


@pytest.mark.parametrize(("from_rate", "to_rate"), RATE_PAIRS)
def test_resampled_length_is_what_soxr_returns(from_rate, to_rate):
    lengths = list(range(1, 400)) + _half_cases(from_rate, to_rate, 40) + [17013, 99_999, 1_000_001]
    for n in lengths:
        got = soxr.resample(np.zeros((n, 1), np.float32), from_rate, to_rate, quality="HQ").shape[0]
        assert resampled_length(n, from_rate, to_rate) == got, (from_rate, to_rate, n)


def test_resampled_length_rounding_at_exact_halves():
    # Both are exactly x.5: soxr's double arithmetic rounds one up and one down, so neither
    # Python's round (half-even) nor exact half-up would match both.
    assert resampled_length(160, 32000, 44100) == 221
    assert resampled_length(120, 24000, 44100) == 220
    assert resampled_length(44100, 44100, 44100) == 44100


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n", [1, 17013, 32000, 32001, 96_007])
def test_resample_shape_dtype_layout(channels, n):
    samples = np.random.default_rng(n).uniform(-0.5, 0.5, (channels, n)).astype(np.float32)
    out = resample(samples, 32000, 44100)
    assert out.shape == (channels, resampled_length(n, 32000, 44100))
    assert out.dtype == np.float32
    assert out.flags.c_contiguous


def test_resample_keeps_each_channels_frequency():
    rate, n = 32000, 32000
    t = np.arange(n) / rate
    samples = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.5 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    out = resample(samples, rate, 44100)
    assert out.shape == (2, 44100)
    middle = out[:, 2000:-2000]  # away from the filter's edges
    freqs = np.fft.rfftfreq(middle.shape[1], 1 / 44100)
    for channel, expected in ((0, 1000), (1, 3000)):
        spectrum = np.abs(np.fft.rfft(middle[channel] * np.hanning(middle.shape[1])))
        assert freqs[np.argmax(spectrum)] == pytest.approx(expected, abs=1.0)
        assert np.max(np.abs(middle[channel])) == pytest.approx(0.5, abs=0.01)


def test_resample_is_identity_at_equal_rates():
    samples = np.random.default_rng(0).uniform(-1, 1, (2, 1001))
    out = resample(samples, 44100, 44100)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, samples.astype(np.float32))


def test_resample_rejects_one_dimensional_input():
    with pytest.raises(ValueError, match="channels, n"):
        resample(np.zeros(100, np.float32), 32000, 44100)
