"""The audio a track continues, made ready for a model: decoded, resampled, mixed, cut.

``continue_from`` names an audio file in the repo (any format the bundled ffmpeg decodes)
or ``track:NAME``, another track's raw audio in the cache (at the model rate, before
loudness and loop processing). Either way the model gets the last ``continue_seconds``
of it as float32 ``(channels, samples)`` at its own rate and channel count; encoding it
with the model's EnCodec is the backend's job (torch stays in ``generate/``).

``melody`` names an audio file in the repo whose melody a MusicGen-Melody model follows:
the model gets all of it, mono (the mean of its channels, as transformers' feature
extractor mixes stereo) at its own rate; the chroma is the backend's job.
"""

from __future__ import annotations

import dataclasses
import struct
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ProjectConfig, rel
from .errors import GenerationError
from .keys import continued_key
from .spec import default_continue_seconds

if TYPE_CHECKING:
    import numpy as np

    from .cache import LocalCache
    from .generate.base import GenerationRequest
    from .tracks import LoadedTrack


def primed_request(
    request: GenerationRequest,
    track: LoadedTrack,
    config: ProjectConfig,
    cache: LocalCache,
    sample_rate: int,
    channels: int,
) -> GenerationRequest:
    """``request`` with the audio ``track`` continues (if it continues any) as its primer and
    the melody it follows (if any) as its melody."""
    spec = track.spec
    if spec.melody is not None:
        request = dataclasses.replace(request, melody=melody_audio(config, track, sample_rate))
    if spec.continue_from is None:
        return request
    primer = prompt_audio(config, cache, track, sample_rate, channels)
    return dataclasses.replace(request, primer=primer, include_prompt=spec.include_prompt)


def melody_audio(config: ProjectConfig, track: LoadedTrack, sample_rate: int) -> np.ndarray:
    """The melody ``track`` follows: float32 mono ``(samples,)`` at ``sample_rate``."""
    import numpy as np

    from .audio import resample
    from .tracks import melody_path

    path = melody_path(config, track.spec)
    pcm, rate = decode_native(path, rel(config, path), "melody")
    mono = pcm.mean(axis=0, keepdims=True, dtype=np.float32)
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    if mono.shape[1] == 0:
        raise GenerationError(f"{track.spec.name}: melody ({track.spec.melody}) holds no audio")
    return np.ascontiguousarray(mono[0], dtype=np.float32)


def prompt_audio(
    config: ProjectConfig, cache: LocalCache, track: LoadedTrack, sample_rate: int, channels: int
) -> np.ndarray:
    """The end of the audio ``track`` continues, at ``sample_rate`` with ``channels``."""
    import numpy as np

    from .audio import resample
    from .render import match_channels

    spec = track.spec
    other = spec.continues_track
    if other is not None:
        pcm, rate = _raw_of(cache, track, other)
    else:
        from .tracks import continue_path

        path = continue_path(config, spec)
        pcm, rate = decode_native(path, rel(config, path))
    if pcm.shape[0] > 2:
        pcm = pcm.mean(axis=0, keepdims=True, dtype=np.float32)
    pcm = match_channels(pcm, channels)
    if rate != sample_rate:
        pcm = resample(pcm, rate, sample_rate)
    seconds = spec.continue_seconds if spec.continue_seconds is not None else default_continue_seconds(spec.window)
    keep = round(seconds * sample_rate)
    pcm = np.ascontiguousarray(pcm[:, -keep:], dtype=np.float32)
    if pcm.shape[1] == 0:
        raise GenerationError(f"{spec.name}: continue_from ({spec.continue_from}) holds no audio")
    if spec.include_prompt and pcm.shape[1] >= round(spec.duration * sample_rate):
        raise GenerationError(
            f"{spec.name}: the {pcm.shape[1] / sample_rate:g} s of continue_from that prime the "
            f"model are not shorter than the track ({spec.duration:g} s), which includes them "
            "(include_prompt = true): set generation.continue_seconds lower"
        )
    return pcm


def _raw_of(cache: LocalCache, track: LoadedTrack, other: str) -> tuple[np.ndarray, int]:
    import numpy as np

    key = continued_key(track.keys.generation_inputs)
    entry = cache.get("raw", key) if key else None
    if entry is None:
        raise GenerationError(
            f"{track.spec.name}: continues {other}, whose generated audio is not in the "
            f"cache; build {other} again (`trackspec cache` can remove its render)"
        )
    info = entry.info
    data = np.fromfile(entry.files["audio.f32"], dtype="<f4")
    if data.size != info["channels"] * info["samples"]:
        raise GenerationError(f"{track.spec.name}: the cached audio of {other} is damaged; build {other} again")
    return data.reshape(info["channels"], info["samples"]), int(info["sample_rate"])


def decode_native(path: Path, shown: str, field: str = "continue_from") -> tuple[np.ndarray, int]:
    """Decode ``path`` with the bundled ffmpeg at its own rate and channel count:
    float32 ``(channels, samples)`` and the rate (ffmpeg writes a float WAV to a pipe)."""
    from .encode import ffmpeg_exe

    args = [
        ffmpeg_exe(),
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-map",
        "0:a:0",
        "-vn",
        "-c:a",
        "pcm_f32le",
        "-f",
        "wav",
        "pipe:1",
    ]
    try:
        proc = subprocess.run(args, capture_output=True, check=False, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise GenerationError(f"cannot run ffmpeg ({args[0]}): {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise GenerationError(f"ffmpeg cannot decode {shown} ({field}): {' '.join(tail)}")
    return _parse_float_wav(proc.stdout, shown)


def _parse_float_wav(data: bytes, shown: str) -> tuple[np.ndarray, int]:
    """Channels, rate and samples of the float WAV ffmpeg streamed (its sizes may be unset)."""
    import numpy as np

    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise GenerationError(f"ffmpeg gave no WAV for {shown}")
    offset, channels, rate = 12, 0, 0
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        body = offset + 8
        if chunk == b"fmt ":
            channels, rate = struct.unpack("<HI", data[body + 2 : body + 8])
        elif chunk == b"data":
            if not channels:
                break
            end = len(data) if size in (0, 0xFFFFFFFF) else min(len(data), body + size)
            n = (end - body) // (4 * channels)
            pcm = np.frombuffer(data, dtype="<f4", count=n * channels, offset=body)
            return pcm.reshape(n, channels).T.astype(np.float32, order="C"), int(rate)
        offset = body + size + (size & 1)
    raise GenerationError(f"ffmpeg gave no audio for {shown}")
