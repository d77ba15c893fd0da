"""Seamless loops: exact lengths, the crossfade's shape, and the seam check on real encoded OGG."""

from __future__ import annotations

import numpy as np
import pytest

from importer.encode import EncodeSettings, decode_pcm, encode
from importer.loop import make_seamless, seam_check
from importer.output_settings import DEFAULT_CROSSFADE_SECONDS, default_crossfade

RATE = 44_100


def music_like(channels: int, seconds: float = 4.3, seed: int = 0) -> np.ndarray:
    """A low chord whose partials do not complete whole periods, under a slow swell, plus
    noise (the hiss and hats that make music's steps large next to the codec's error).

    Like music, its end has nothing to do with its start: the partials start at phase 0
    and the track ends where the chord is loud, so the unlooped seam jumps by the track's
    own amplitude (about 7x the limit) while a looped one stays under it (0.1-0.8x over
    seeds 0-3).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    out = np.empty((channels, t.size), dtype=np.float64)
    for ch in range(channels):
        chord = sum(np.sin(2 * np.pi * f * (1 + 0.01 * ch) * t) for f in (110.0, 138.6, 164.8))
        envelope = 0.5 + 0.4 * np.sin(2 * np.pi * 0.3 * t + ch)
        out[ch] = 0.2 * envelope * chord + 0.01 * rng.standard_normal(t.size)
    # End within the last 10 ms where the quietest channel is loudest.
    window = np.abs(out[:, -RATE // 100 :]).min(axis=0)
    end = out.shape[1] - RATE // 100 + int(np.argmax(window)) + 1
    return out[:, :end].astype(np.float32)


def encoded_roundtrip(audio: np.ndarray, tmp_path, stem: str) -> np.ndarray:
    """Through the project's encoder to OGG and back, as an engine would play it."""
    paths = encode(audio, EncodeSettings(("ogg",), RATE), tmp_path, stem)
    return decode_pcm(paths["ogg"], RATE, audio.shape[0], fmt="ogg")


@pytest.mark.parametrize("channels", [1, 2])
def test_seam_check_passes_looped_and_fails_unlooped(tmp_path, channels):
    audio = music_like(channels)
    looped = make_seamless(audio, RATE, 0.5)

    decoded_loop = encoded_roundtrip(looped.audio, tmp_path, "looped")
    decoded_plain = encoded_roundtrip(audio, tmp_path, "plain")

    assert decoded_loop.shape == (channels, audio.shape[1] - round(0.5 * RATE))
    seam = seam_check(decoded_loop)
    assert seam.ok, f"looped seam jump {seam.jump} > limit {seam.limit}"
    plain = seam_check(decoded_plain)
    # The check can fail: the same music, not looped, jumps far more than it ever steps.
    assert not plain.ok
    assert np.all(plain.jump > 3 * plain.limit), (plain.jump, plain.limit)


@pytest.mark.parametrize("channels", [1, 2])
def test_exact_length_and_loop_points(channels):
    audio = music_like(channels, seconds=3.0)
    n = audio.shape[1]
    result = make_seamless(audio, RATE, 1.0)
    c = RATE
    assert result.audio.shape == (channels, n - c)
    assert result.audio.dtype == np.float32 and result.audio.flags.c_contiguous
    assert (result.start, result.length, result.crossfade, result.rate) == (0, n - c, c, RATE)
    assert result.index_entry() == {"start": 0, "length": n - c, "start_seconds": 0.0, "bars": None, "bpm": None}


def test_crossfade_joins_are_original_steps():
    """Outside the fade the audio is untouched; the fade begins exactly at the tail and
    ends exactly on the sample that precedes the result's first sample in the original."""
    audio = music_like(2, seconds=2.0)
    n, c = audio.shape[1], 4410
    out = make_seamless(audio, RATE, c / RATE).audio
    np.testing.assert_array_equal(out[:, : n - 2 * c], audio[:, c : n - c])
    np.testing.assert_array_equal(out[:, n - 2 * c], audio[:, n - c])
    np.testing.assert_array_equal(out[:, -1], audio[:, c - 1])
    np.testing.assert_array_equal(out[:, 0], audio[:, c])


def test_equal_power_keeps_the_level_of_uncorrelated_material():
    rng = np.random.default_rng(1)
    noise = (0.1 * rng.standard_normal((1, RATE * 4))).astype(np.float32)
    c = RATE
    out = make_seamless(noise, RATE, 1.0).audio
    fade = out[:, -c:]
    rms_fade = np.sqrt(np.mean(fade.astype(np.float64) ** 2))
    rms_rest = np.sqrt(np.mean(out[:, :-c].astype(np.float64) ** 2))
    assert abs(20 * np.log10(rms_fade / rms_rest)) < 0.3  # a linear fade would dip ~1.8 dB


def test_zero_crossfade_loops_the_buffer_as_is():
    audio = music_like(1, seconds=1.0)
    result = make_seamless(audio, RATE, 0.0)
    np.testing.assert_array_equal(result.audio, audio)
    assert (result.start, result.length) == (0, audio.shape[1])


def test_default_crossfade_is_one_bar_or_two_seconds():
    assert default_crossfade(120) == pytest.approx(2.0)
    assert default_crossfade(90) == pytest.approx(4 * 60 / 90)
    assert default_crossfade(None) == DEFAULT_CROSSFADE_SECONDS == 2.0
    for bad in (0, -10, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bpm"):
            default_crossfade(bad)


def test_crossfade_must_be_shorter_than_half_the_track():
    audio = music_like(1, seconds=3.0)
    with pytest.raises(ValueError, match="shorter than half the track"):
        make_seamless(audio, RATE, 1.5)
    make_seamless(audio, RATE, 1.49)
    with pytest.raises(ValueError, match="0 or more"):
        make_seamless(audio, RATE, -1.0)
    with pytest.raises(ValueError, match="under 2 samples"):
        make_seamless(audio, RATE, 1 / RATE)
    with pytest.raises(ValueError, match="channels, n"):
        make_seamless(audio[0], RATE, 0.5)
