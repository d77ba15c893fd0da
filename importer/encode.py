"""Encoding PCM into the game-ready formats, and proving every output whole.

One ffmpeg process per track: the float32 PCM is piped in once and ``asplit`` fans it out
to one encoder per format, each writing a temp file beside its target. Nothing replaces a
target until every output has been decoded in full back to exactly the input's sample
count: a killed ffmpeg leaves 0-byte files and a closed stdin makes it exit 0 with a short
file, so ffmpeg's exit status alone proves nothing. Game engines loop these files
sample-exactly, so a length that is off by a few samples is a defect too.

Two ffmpeg defects (seen with ffmpeg 9.0.2) are worked around so that check holds:

* MP3: the muxer takes the gapless end padding of the LAME header from the last packet
  only. When LAME's flush emits a frame with no input in it (at 44.1 kHz: whenever
  ``n % 1152`` is 1..46), the padding of the frame before is lost and gapless decoders play
  up to 46 samples of encoder padding too many. ``_fix_mp3_padding`` rewrites it from ``n``.
* Ogg: ffmpeg's demuxer trims Vorbis's first and last blocks only when the first audio page
  is not also the last one, so short tracks get short pages (``_ogg_page_duration_us``).
  The files were valid either way; this keeps ffmpeg usable as the checking decoder.

Outputs are ``bitexact`` (no random Ogg serial, no version strings), so the same PCM and
settings give byte-identical files.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ffmpeg
import numpy as np

from importer import fsutil
from importer.errors import EncodeError
from importer.fields import SUPPORTED_FORMATS  # one list for the spec parser and the encoder

if TYPE_CHECKING:
    from importer.tags import TrackTags

_STDERR_LINES = 15
_STDERR_HEAD = 5
_CHUNK = 1 << 20
_BITEXACT = {"fflags": "+bitexact", "flags:a": "+bitexact"}
# ffmpeg's per-thread epilogue after an error: it says nothing and pushes the cause out
# of the tail.
_STDERR_NOISE = ("Task finished with error code", "Terminating thread with return code")


@dataclass(frozen=True)
class EncodeSettings:
    """Which files to write and how: ``ogg_quality`` is Vorbis VBR -1..10, ``mp3_quality``
    LAME VBR 0..9 (0 best). Checked here because ffmpeg silently clamps both."""

    formats: tuple[str, ...]
    sample_rate: int
    ogg_quality: float = 6.0
    mp3_quality: int = 4

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(SUPPORTED_FORMATS)
        if not self.formats or unknown or len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats must be distinct values from {SUPPORTED_FORMATS}, got {self.formats}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if not -1 <= self.ogg_quality <= 10:
            raise ValueError(f"ogg_quality must be within -1..10, got {self.ogg_quality}")
        if self.mp3_quality not in range(10):
            raise ValueError(f"mp3_quality must be an integer 0..9, got {self.mp3_quality}")


def ffmpeg_exe() -> str:
    """The ffmpeg binary: ``TRACKSPEC_FFMPEG`` if set, else the one imageio-ffmpeg ships.

    The environment is read on every call so an override takes effect at once; only the
    bundled lookup is cached.
    """
    override = os.environ.get("TRACKSPEC_FFMPEG")
    if override:
        found = shutil.which(override)
        if found is None:
            raise EncodeError(
                f"TRACKSPEC_FFMPEG is {override!r}, which is not an executable file; "
                "point it at an ffmpeg binary or unset it"
            )
        return found
    return _bundled_ffmpeg()


@functools.cache
def _bundled_ffmpeg() -> str:
    try:  # imported here: with TRACKSPEC_FFMPEG set, imageio-ffmpeg need not be installed
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise EncodeError(f"no ffmpeg binary found ({exc}); reinstall imageio-ffmpeg or set TRACKSPEC_FFMPEG") from exc


def encode(
    pcm: np.ndarray, settings: EncodeSettings, out_dir: Path, stem: str, tags: TrackTags | None = None
) -> dict[str, Path]:
    """Write ``out_dir/<stem>.<fmt>`` for every format in ``settings`` from one ffmpeg run.

    ``pcm`` is float32 ``(channels, n)`` already at ``settings.sample_rate``; ``out_dir``
    must exist. Every target is replaced by an output that decodes to exactly ``n`` samples;
    on any error (Ctrl-C included) ffmpeg is killed, no temp file is left, and no target is
    touched unless one of the final same-directory renames itself fails. ``tags`` (loop
    points, provenance) are written into the temp files before they are checked. Returns
    ``{format: path}``.
    """
    if pcm.ndim != 2 or pcm.shape[1] == 0:
        raise ValueError(f"expected non-empty (channels, n) PCM, got shape {pcm.shape}")
    if not np.isfinite(pcm).all():
        # ffmpeg would write noise to WAV and fail in LAME with "Cannot allocate memory".
        raise EncodeError(f"{out_dir / stem}: the audio contains NaN or infinite samples")
    channels, n = pcm.shape
    rate = settings.sample_rate
    targets = {fmt: out_dir / f"{stem}.{fmt}" for fmt in settings.formats}
    temps = {fmt: fsutil.temp_path_for(target) for fmt, target in targets.items()}

    source = ffmpeg.input("pipe:", f="f32le", ac=channels, ar=rate)
    branches = source.audio.filter_multi_output("asplit", len(temps))
    outputs = [
        ffmpeg.output(branches.stream(i), str(temp), **_output_args(fmt, settings, n))
        for i, (fmt, temp) in enumerate(temps.items())
    ]
    command = ffmpeg.merge_outputs(*outputs).global_args("-hide_banner", "-nostats", "-loglevel", "error")
    exe = ffmpeg_exe()
    process: subprocess.Popen[bytes] | None = None
    try:
        try:
            process = command.run_async(cmd=exe, pipe_stdin=True, pipe_stderr=True)
        except OSError as exc:
            raise EncodeError(f"cannot run ffmpeg ({exe}): {exc}") from exc
        # Interleaved float32: the transposed view serialises frame by frame.
        _, stderr = process.communicate(np.asarray(pcm, dtype="<f4").T.tobytes())
        if process.returncode != 0:
            raise EncodeError(
                f"ffmpeg failed (exit status {process.returncode}) encoding "
                f"{out_dir / stem} as {'/'.join(temps)}:\n{_tail(stderr)}"
            )
        if "mp3" in temps:
            _fix_mp3_padding(temps["mp3"], n)  # before tagging: it expects the Xing frame first
        if tags is not None:
            from importer.tags import TAGGABLE_FORMATS, write_tags

            for fmt, temp in temps.items():
                if fmt in TAGGABLE_FORMATS:
                    write_tags(temp, fmt, tags)
        for fmt, temp in temps.items():
            decoded = decode_sample_count(temp, rate, channels, fmt=fmt)
            if decoded != n:
                raise EncodeError(f"{targets[fmt]}: the encoded file decoded to {decoded} samples, expected {n}")
            _fsync_file(temp)
        for fmt, temp in temps.items():
            os.replace(temp, targets[fmt])
    except BaseException:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise
    fsutil.fsync_dir(out_dir)
    return targets


def decode_sample_count(path: Path, sample_rate: int, channels: int, fmt: str | None = None) -> int:
    """Decode ``path`` in full and count its samples per channel, streaming the PCM.

    A full decode, not a header read: it is what proves a file whole. ``fmt`` names the
    container where the file name does not (temp files); it also spares ffmpeg probing,
    which rejects some valid files of a few frames.
    """
    args = _decode_command(path, sample_rate, channels, "s16le", fmt).compile(cmd=ffmpeg_exe())
    total = 0
    # stderr goes to a file: a damaged input can log more than a pipe holds while stdout is
    # being drained, which would deadlock.
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        except OSError as exc:
            raise EncodeError(f"cannot run ffmpeg ({args[0]}): {exc}") from exc
        stdout = process.stdout
        assert stdout is not None  # stdout=PIPE
        try:
            while chunk := stdout.read(_CHUNK):
                total += len(chunk)
        except BaseException:
            process.kill()
            raise
        finally:
            stdout.close()
            process.wait()
        if process.returncode != 0:
            errors.seek(0)
            raise EncodeError(
                f"ffmpeg could not decode {path} (exit status {process.returncode}):\n{_tail(errors.read())}"
            )
    return total // (2 * channels)


def decode_pcm(path: Path, sample_rate: int, channels: int, fmt: str | None = None) -> np.ndarray:
    """Decode ``path`` to float32 ``(channels, n)`` at ``sample_rate`` (for checks and tests)."""
    command = _decode_command(path, sample_rate, channels, "f32le", fmt)
    try:
        data, _ = command.run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        raise EncodeError(f"ffmpeg could not decode {path}:\n{_tail(exc.stderr)}") from exc
    except OSError as exc:
        raise EncodeError(f"cannot run ffmpeg: {exc}") from exc
    return np.frombuffer(data, dtype="<f4").reshape(-1, channels).T.astype(np.float32, order="C")


def _output_args(fmt: str, settings: EncodeSettings, n: int) -> dict[str, Any]:
    """ffmpeg output options for one format.

    ``f=`` because temp names lack the extension; ``ar=`` so that a rate an encoder lacks
    (LAME has none above 48 kHz) is an error rather than a silent resample.
    """
    common = {"f": fmt, "ar": settings.sample_rate, **_BITEXACT}
    if fmt == "ogg":
        page_us = _ogg_page_duration_us(n, settings.sample_rate)
        return {**common, "acodec": "libvorbis", "q:a": settings.ogg_quality, "page_duration": page_us}
    if fmt == "mp3":
        # No ID3 tag: the Xing/LAME frame then starts the file, where _fix_mp3_padding
        # expects it. The temp file is seekable, which the muxer needs to fill that frame in.
        return {**common, "acodec": "libmp3lame", "q:a": settings.mp3_quality, "id3v2_version": 0}
    if fmt == "wav":
        return {**common, "acodec": "pcm_s16le"}
    return {**common, "acodec": "flac", "sample_fmt": "s16"}


def _ogg_page_duration_us(n: int, sample_rate: int) -> int:
    """Ogg page length: a quarter of the track, at most ffmpeg's default of one second.

    ffmpeg mis-trims a Vorbis stream whose only audio page is also its last (by up to a
    block either way), so every track gets at least two pages; tracks of 4 s and more keep
    the default, and its overhead.
    """
    return max(1, min(1_000_000, n * 1_000_000 // (4 * sample_rate)))


def _fix_mp3_padding(path: Path, n: int) -> None:
    """Make the LAME header's gapless info say exactly ``n`` samples (see module docstring).

    Decoders play ``frames * samples_per_frame - delay - padding`` samples; ``frames`` and
    ``delay`` are right, so the padding follows. The tag's CRC-16 covers the frame up to the
    CRC field, so it is recomputed. A file this cannot make sense of is left as it is: the
    full decode that follows is what judges it.
    """
    with open(path, "r+b") as fh:
        frame = bytearray(fh.read(192))
        if len(frame) < 4 or frame[0] != 0xFF or frame[1] & 0xE0 != 0xE0:
            return
        mpeg1 = (frame[1] >> 3) & 3 == 3
        mono = frame[3] >> 6 == 3
        xing = 4 + (17 if mono else 32) if mpeg1 else 4 + (9 if mono else 17)
        # ffmpeg writes every Xing field (flags 0x0F), so the LAME tag is at a fixed place.
        if len(frame) < xing + 156 or frame[xing : xing + 4] not in (b"Xing", b"Info") or frame[xing + 7] != 0x0F:
            return
        frames = int.from_bytes(frame[xing + 8 : xing + 12], "big")
        delay_padding = int.from_bytes(frame[xing + 141 : xing + 144], "big")
        delay = delay_padding >> 12
        padding = frames * (1152 if mpeg1 else 576) - delay - n
        if padding == delay_padding & 0xFFF or not 0 <= padding < 1 << 12:
            return  # right already, or no padding can fix it
        frame[xing + 141 : xing + 144] = ((delay << 12) | padding).to_bytes(3, "big")
        frame[xing + 154 : xing + 156] = _crc16(frame[: xing + 154]).to_bytes(2, "big")
        fh.seek(0)
        fh.write(frame[: xing + 156])


def _crc16(data: bytes | bytearray) -> int:
    """CRC-16/ARC (polynomial 0x8005, reflected), the checksum of the LAME tag."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _decode_command(path: Path, sample_rate: int, channels: int, sample_format: str, fmt: str | None) -> Any:
    source = ffmpeg.input(str(path), **({"f": fmt} if fmt else {}))
    return source.output("pipe:", f=sample_format, ac=channels, ar=sample_rate).global_args(
        "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error"
    )


def _fsync_file(path: Path) -> None:
    """Flush ffmpeg's output to disk before the rename makes it the target."""
    with open(path, "r+b") as fh:
        os.fsync(fh.fileno())


def _tail(stderr: bytes) -> str:
    """What ffmpeg said went wrong: its last stderr lines, and its first ones too when there
    are many, since the first error is usually the cause and the rest its consequences."""
    lines = [
        line
        for line in stderr.decode(errors="replace").splitlines()
        if line.strip() and not any(noise in line for noise in _STDERR_NOISE)
    ]
    if len(lines) > _STDERR_LINES:
        lines = [*lines[:_STDERR_HEAD], "...", *lines[_STDERR_HEAD - _STDERR_LINES :]]
    return "\n".join(lines) or "(ffmpeg printed nothing)"
