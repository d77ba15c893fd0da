"""The render step: cached raw audio in, a cache entry of encoded, verified files out.

The chain, in order: channels (as generated, or mono/stereo as asked), resample to the
output rate, DC removal, the seamless loop (at the output rate, so loop points are output samples),
loudness normalisation with its true-peak limiter, one ffmpeg run writing every format
with its tags, then every file decoded and measured. Loudness and true peak are promised
for the files a game ships, so they are checked on the decoded files: where a codec pushed
the true peak over the ceiling, the audio is normalised again with more headroom and
encoded again.

Kept apart from the executor so that it can run on worker threads (it touches no index,
state or reporter, only the cache, which is safe for concurrent writers) and so that the
benchmark times exactly what a build runs. Imported only when a track needs rendering:
it pulls in numpy, scipy, soxr and the ffmpeg bindings.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .audio import remove_dc, resample
from .cache import CacheEntry, LocalCache
from .encode import EncodeSettings, encode
from .errors import CacheCorrupt, EncodeError
from .loop import LoopDoesNotFit, LoopResult, bar_loop, make_seamless
from .loudness import DEFAULT_MARGIN_DB, measure_file, normalise
from .tags import TrackTags

if TYPE_CHECKING:
    from .tempo import Tempo
    from .tracks import LoadedTrack

log = logging.getLogger(__name__)

#: Encodes tried before giving up on holding the true-peak ceiling.
MAX_ENCODES = 3
#: Extra headroom added on a retry, over the overshoot the decoded files showed.
RETRY_STEP_DB = 0.1


@dataclass(frozen=True)
class RenderSettings:
    """Everything that turns a track's raw audio into its files (all of it in the render key)."""

    encode: EncodeSettings
    channels: int | None = None  # None: as the model made it
    loop_crossfade: float | None = None  # seconds; None: not looped
    loudness_target: float | None = None  # LUFS; None: left as generated
    true_peak: float = -1.0  # ceiling in dBTP
    tags: TrackTags | None = None
    tempo: bool = False  # measure tempo, beats and downbeats
    bar_beats: int = 4
    bpm_hint: float | None = None  # centre of the tempo analysis (a loop's meta.bpm)
    loop_bars: int | None = None  # None: as many as fit
    loop_start: int | float | str | None = None
    loop_crossfade_set: bool = False  # False: one bar at the measured tempo


def settings_for(track: LoadedTrack) -> RenderSettings:
    """What a loaded track's spec asks the render for, with the tags its files carry."""
    from .tracks import tags_for

    spec = track.spec
    encoding = EncodeSettings(
        formats=spec.formats, sample_rate=spec.sample_rate, ogg_quality=spec.ogg_quality, mp3_quality=spec.mp3_quality
    )
    return RenderSettings(
        encode=encoding,
        channels=spec.channels,
        loop_crossfade=spec.loop_crossfade,
        loudness_target=spec.loudness_target,
        true_peak=spec.true_peak,
        tags=tags_for(track),
        tempo=spec.measures_tempo,
        bar_beats=spec.bar_beats,
        bpm_hint=spec.loop_bpm_hint,
        loop_bars=spec.loop_bars,
        loop_start=spec.loop_start,
        loop_crossfade_set=spec.loop_crossfade_set,
    )


def render_raw(
    cache: LocalCache, raw: CacheEntry, settings: RenderSettings, key: str, inputs: dict[str, Any]
) -> CacheEntry:
    """Render the raw entry ``raw``; store the files as render entry ``key``.

    ``inputs`` (what the render key was made from) goes into the entry's info, so that
    later plans can say what changed; so do the audio facts, the loop points and the
    loudness measured on every decoded file.
    """
    pcm = _load(raw)
    pcm = match_channels(pcm, settings.channels)
    rate = settings.encode.sample_rate
    pcm = remove_dc(resample(pcm, int(raw.info["sample_rate"]), rate), rate)
    loop = None
    tags = settings.tags
    title = tags.title if tags is not None else key[:12]
    tempo = None
    if settings.tempo:
        from .tempo import analyse

        found = analyse(pcm, rate, settings.bar_beats, settings.bpm_hint)
        tempo = found.tempo
        if tempo is None:
            log.warning(
                "%s: tempo not measured: %s%s",
                title,
                found.reason,
                "; the loop falls back to a plain crossfade" if settings.loop_crossfade is not None else "",
            )
    if settings.loop_crossfade is not None:
        looped = _loop(pcm, rate, settings, tempo, title)
        pcm, loop = looped.audio, looped.index_entry()
        if tempo is not None:
            tempo = tempo.shifted(looped.trimmed / rate)
        if tags is not None:
            tags = dataclasses.replace(tags, loop_start=looped.start, loop_length=looped.length)
    staging = cache.staging_dir()
    try:
        outputs, loudness = _encode_within_ceiling(pcm, settings, tags, staging)
        duration = pcm.shape[1] / rate
        facts = {
            "sample_rate": rate,
            "channels": int(pcm.shape[0]),
            "samples": int(pcm.shape[1]),
            "duration": round(duration, 6),
            "loop": loop,
            "loudness": loudness,
            "tempo": None if tempo is None else tempo.index_entry(rate, duration, settings.bpm_hint),
            "title": tags.title if tags is not None else None,
        }
        files = {f"audio.{fmt}": path for fmt, path in outputs.items()}
        return cache.put("render", key, files, {**facts, "inputs": inputs})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _loop(pcm: np.ndarray, rate: int, settings: RenderSettings, tempo: Tempo | None, title: str) -> LoopResult:
    """Whole bars from a downbeat at the measured tempo; without one, today's plain loop."""
    assert settings.loop_crossfade is not None
    if tempo is None:
        if not settings.tempo:
            log.warning(
                '%s: tempo = "off": the loop is a plain %.2f s crossfade, not bar-aligned',
                title,
                settings.loop_crossfade,
            )
        if settings.loop_start is not None or settings.loop_bars is not None:
            log.warning(
                "%s: without a measured tempo, loop_start and loop_bars are not used: "
                "the whole file loops with a %.2f s crossfade",
                title,
                settings.loop_crossfade,
            )
        return make_seamless(pcm, rate, settings.loop_crossfade)
    try:
        return bar_loop(
            pcm,
            rate,
            bpm=tempo.bpm,
            first_downbeat=tempo.first_downbeat,
            bar_beats=tempo.bar_beats,
            crossfade_seconds=settings.loop_crossfade if settings.loop_crossfade_set else None,
            bars=settings.loop_bars,
            start=settings.loop_start,
        )
    except LoopDoesNotFit as exc:
        if settings.loop_bars is None and settings.loop_start is None:  # nothing asked that could be kept
            log.warning("%s: %s; the loop falls back to a plain %.2f s crossfade", title, exc, settings.loop_crossfade)
            return make_seamless(pcm, rate, settings.loop_crossfade)
        raise EncodeError(f"{title}: {exc}; lower [output] loop_bars or loop_start, or lengthen the track") from exc


def match_channels(pcm: np.ndarray, channels: int | None) -> np.ndarray:
    """Mono duplicated to stereo, stereo averaged to mono, or as is."""
    if channels is None or channels == pcm.shape[0]:
        return pcm
    if channels == 2 and pcm.shape[0] == 1:
        return np.repeat(pcm, 2, axis=0)
    if channels == 1 and pcm.shape[0] == 2:
        return pcm.mean(axis=0, keepdims=True, dtype=np.float32)
    raise ValueError(f"cannot make {channels} channels from {pcm.shape[0]}")


def _load(raw: CacheEntry) -> np.ndarray:
    info = raw.info
    data = np.fromfile(raw.files["audio.f32"], dtype="<f4")
    if data.size != info["channels"] * info["samples"]:
        raise CacheCorrupt(
            f"raw audio {raw.key[:12]} holds {data.size} values, its manifest "
            f"says {info['channels']} x {info['samples']}"
        )
    return data.reshape(info["channels"], info["samples"])


def _encode_within_ceiling(
    pcm: np.ndarray, settings: RenderSettings, tags: TrackTags | None, out_dir: Path
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Normalise, encode and measure until every decoded file holds the true-peak ceiling."""
    rate, target, ceiling = settings.encode.sample_rate, settings.loudness_target, settings.true_peak
    margin = DEFAULT_MARGIN_DB
    for _ in range(MAX_ENCODES):
        audio, method, gain = pcm, "none", 0.0
        if target is not None:
            try:
                audio, result = normalise(pcm, rate, target, ceiling, margin)
            except ValueError as exc:
                raise EncodeError(f"cannot reach {target:g} LUFS under {ceiling:g} dBTP: {exc}") from exc
            method, gain = result.method, result.gain_db
        outputs = encode(audio, settings.encode, out_dir, "audio", tags=tags)
        measured = {fmt: measure_file(path, audio.shape[0], rate) for fmt, path in outputs.items()}
        worst = max(peak for _, peak in measured.values())
        if target is None or worst <= ceiling:
            break
        margin += worst - ceiling + RETRY_STEP_DB
    else:
        raise EncodeError(
            f"the encoded files still peak at {worst:.2f} dBTP, over the {ceiling:g} dBTP "
            f"ceiling, after {MAX_ENCODES} tries"
        )
    loudness = {
        "target": target,
        "true_peak_ceiling": ceiling if target is not None else None,
        "method": method,
        "gain_db": round(gain, 2),
        "files": {
            fmt: {"integrated": _rounded(lufs), "true_peak": _rounded(peak)} for fmt, (lufs, peak) in measured.items()
        },
    }
    return outputs, loudness


def _rounded(value: float) -> float | None:
    """JSON has no infinities: silence measures -inf, recorded as null."""
    return round(value, 2) if np.isfinite(value) else None
