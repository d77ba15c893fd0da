"""importer.encode against the real ffmpeg: exact lengths, clean failures, no leftovers."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from importer.encode import (
    SUPPORTED_FORMATS,
    EncodeSettings,
    _crc16,
    decode_pcm,
    decode_sample_count,
    encode,
    ffmpeg_exe,
)
from importer.errors import EncodeError
from importer.fsutil import is_temp_name

RATE = 44100
posix_only = pytest.mark.skipif(os.name != "posix", reason="the fake ffmpeg is a #! script; SIGALRM")


def tone(channels: int, n: int, rate: int = RATE) -> np.ndarray:
    """A different sine per channel, so a channel mix-up or a shift shows."""
    t = np.arange(n) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * (440 * (c + 1)) * t + c) for c in range(channels)]).astype(np.float32)


def names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def fake_ffmpeg(tmp_path: Path, body: str) -> Path:
    """An executable that runs ``body`` (Python, with ``args`` and ``real``) then the real ffmpeg."""
    script = tmp_path / "fake-ffmpeg"
    script.write_text(
        f"#!{sys.executable}\nimport os, sys, time\nreal = {ffmpeg_exe()!r}\nargs = sys.argv[1:]\n"
        + textwrap.dedent(body)
        + "\nos.execv(real, [real, *args])\n"
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n", [17013, 44100, 132300])
def test_every_format_decodes_to_exactly_n_samples(tmp_path, channels, n):
    pcm = tone(channels, n)
    outputs = encode(pcm, EncodeSettings(SUPPORTED_FORMATS, RATE), tmp_path, "track")

    assert outputs == {fmt: tmp_path / f"track.{fmt}" for fmt in SUPPORTED_FORMATS}
    assert names(tmp_path) == {f"track.{fmt}" for fmt in SUPPORTED_FORMATS}  # no temp left
    for fmt, path in outputs.items():
        assert decode_sample_count(path, RATE, channels) == n, fmt
    for fmt in ("ogg", "mp3"):  # lossy, but gapless: aligned with the input, not shifted
        decoded = decode_pcm(outputs[fmt], RATE, channels)
        assert decoded.shape == (channels, n)
        for c in range(channels):
            assert np.corrcoef(decoded[c], pcm[c])[0, 1] > 0.99, (fmt, c)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n", [1153, 1198, 46081])
def test_mp3_gapless_padding_is_exact_where_ffmpeg_gets_it_wrong(tmp_path, channels, n):
    # n % 1152 in 1..46: LAME's flush emits a frame with no input and ffmpeg's muxer
    # records only that frame's padding (decoding gave n + 47 - n % 1152 before the fix).
    path = encode(tone(channels, n), EncodeSettings(("mp3",), RATE), tmp_path, "t")["mp3"]
    assert decode_sample_count(path, RATE, channels) == n
    frame = path.read_bytes()[:192]
    xing = frame.find(b"Xing") if b"Xing" in frame else frame.find(b"Info")
    assert xing in (21, 36)
    assert int.from_bytes(frame[xing + 154 : xing + 156], "big") == _crc16(frame[: xing + 154])


@pytest.mark.parametrize("n", [1000, 4000])
def test_short_tracks_keep_their_length(tmp_path, n):
    outputs = encode(tone(2, n), EncodeSettings(("ogg", "mp3", "wav"), RATE), tmp_path, "blip")
    for path in outputs.values():
        assert decode_sample_count(path, RATE, 2) == n, path


def test_wav_and_flac_hold_the_input_to_16_bits(tmp_path):
    pcm = np.random.default_rng(3).uniform(-0.99, 0.99, (2, 20001)).astype(np.float32)
    outputs = encode(pcm, EncodeSettings(("wav", "flac"), RATE), tmp_path, "noise")
    wav = decode_pcm(outputs["wav"], RATE, 2)
    assert wav.shape == pcm.shape and wav.dtype == np.float32
    assert np.max(np.abs(wav - pcm)) <= 1 / 32768
    np.testing.assert_array_equal(decode_pcm(outputs["flac"], RATE, 2), wav)


def test_same_input_gives_identical_files(tmp_path):
    pcm = tone(2, 30000)
    settings = EncodeSettings(SUPPORTED_FORMATS, RATE)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    a, b = encode(pcm, settings, first, "x"), encode(pcm, settings, second, "x")
    for fmt in SUPPORTED_FORMATS:
        assert a[fmt].read_bytes() == b[fmt].read_bytes(), fmt


def test_ffmpeg_failure_reports_ffmpeg_and_leaves_old_files(tmp_path):
    (tmp_path / "song.ogg").write_bytes(b"old ogg")
    # LAME has no 96 kHz mode; the ogg and wav branches are already writing when it fails.
    settings = EncodeSettings(("ogg", "mp3", "wav"), 96000)
    with pytest.raises(EncodeError) as caught:
        encode(tone(2, 96000, 96000), settings, tmp_path, "song")
    message = str(caught.value)
    assert "exit status" in message
    assert "Specified sample rate 96000 is not supported by the libmp3lame encoder" in message
    assert names(tmp_path) == {"song.ogg"}
    assert (tmp_path / "song.ogg").read_bytes() == b"old ogg"


def test_missing_output_directory_reports_ffmpegs_reason(tmp_path):
    with pytest.raises(EncodeError, match="No such file or directory"):
        encode(tone(1, 1000), EncodeSettings(("wav",), RATE), tmp_path / "absent", "x")
    assert names(tmp_path) == set()


def test_nan_samples_are_refused_before_ffmpeg(tmp_path):
    pcm = tone(2, 1000)
    pcm[1, 500] = np.nan
    with pytest.raises(EncodeError, match="NaN or infinite"):
        encode(pcm, EncodeSettings(("wav",), RATE), tmp_path, "x")
    assert names(tmp_path) == set()


def test_bogus_ffmpeg_override(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKSPEC_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(EncodeError, match="TRACKSPEC_FFMPEG"):
        encode(tone(1, 1000), EncodeSettings(("ogg",), RATE), tmp_path, "x")
    assert names(tmp_path) == set()


@posix_only
def test_short_output_with_exit_status_0_is_caught(tmp_path, monkeypatch):
    # ffmpeg that stops reading its input after 0.1 s, exits 0, and leaves short files.
    monkeypatch.setenv(
        "TRACKSPEC_FFMPEG",
        str(
            fake_ffmpeg(
                tmp_path,
                """
        if args[args.index("-i") + 1] == "pipe:":
            args = ["-t", "0.1", *args]
    """,
            )
        ),
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.mp3").write_bytes(b"old mp3")
    with pytest.raises(EncodeError, match=r"decoded to \d{4} samples, expected 44100"):
        encode(tone(2, 44100), EncodeSettings(("ogg", "mp3"), RATE), out, "x")
    assert names(out) == {"x.mp3"}
    assert (out / "x.mp3").read_bytes() == b"old mp3"


@posix_only
def test_interrupt_kills_ffmpeg_and_removes_temps(tmp_path, monkeypatch):
    # ffmpeg reading its input in real time (-re): 10 s of audio keeps it busy while the
    # "Ctrl-C" arrives; it writes its pid first (execv keeps it).
    pid_file = tmp_path / "pid"
    monkeypatch.setenv(
        "TRACKSPEC_FFMPEG",
        str(
            fake_ffmpeg(
                tmp_path,
                f"""
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        args = ["-re", *args]
    """,
            )
        ),
    )
    out = tmp_path / "out"
    out.mkdir()
    seen_at_interrupt: set[str] = set()

    def interrupt(signum, frame):
        seen_at_interrupt.update(names(out))
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            encode(tone(2, 10 * RATE), EncodeSettings(("ogg", "wav"), RATE), out, "x")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(seen_at_interrupt) == 2 and all(is_temp_name(name) for name in seen_at_interrupt)
    assert names(out) == set()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_decode_sample_count_is_a_real_decode(tmp_path):
    path = encode(tone(2, 20000), EncodeSettings(("wav",), RATE), tmp_path, "x")["wav"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert 9000 < decode_sample_count(path, RATE, 2) < 10100
    path.write_bytes(b"")  # what a killed ffmpeg leaves
    with pytest.raises(EncodeError, match="could not decode"):
        decode_sample_count(path, RATE, 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"formats": ("aac",)},
        {"formats": ()},
        {"formats": ("ogg", "ogg")},
        {"sample_rate": 0},
        {"ogg_quality": 99},
        {"ogg_quality": -2},
        {"mp3_quality": 10},
        {"mp3_quality": 2.5},
    ],
)
def test_settings_reject_what_ffmpeg_would_mishandle(kwargs):
    with pytest.raises(ValueError):
        EncodeSettings(**{"formats": ("ogg",), "sample_rate": RATE, **kwargs})
