"""Canonical digests: the only place that knows what is in a key.

* The **generation key** covers what decides the raw audio: prompt, duration, seed, the
  model's identity, sampling settings, the windowing actually used, the backend and a
  generation-format version.
* The **render key** covers the generation key plus what turns raw audio into files:
  resampler, sample rate, formats and their qualities, and an encoder version.

Inputs are normalised before hashing (numbers as floats or ints by field, formats as a
sorted list), so key order, whitespace, comments and ``60`` vs ``60.0`` change nothing,
and ``description`` and ``[meta]`` are never included.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .model_ref import ModelRef
from .spec import TrackSpec

BACKEND = "transformers-musicgen"
#: Bump when the generation code changes what a key produces.
#: 2: own step decoder; CUDA batches padded to batch_size rows. 3: windows and strides floor to
#: frames (audiocraft).
GENERATION_FORMAT_VERSION = 3
#: Bump when resampling or encoding changes what a render key produces.
ENCODER_VERSION = 3  # 2: tags, loudness and loops in the chain; 3: measured tempo, bar-aligned loops
#: Bump when the tempo analysis (importer/tempo.py, imported only to render) measures differently.
TEMPO_ANALYSIS_VERSION = 1
RESAMPLER = "soxr-hq"
WINDOW_MARGIN = 0.1


@dataclass(frozen=True)
class TrackKeys:
    """The keys of one track and the inputs they were made from (for "what changed")."""

    seed: int
    generation: str
    render: str
    generation_inputs: dict[str, Any]
    render_inputs: dict[str, Any]


def digest(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _generation_inputs(spec: TrackSpec, model: ModelRef) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "backend": BACKEND,
        "format": GENERATION_FORMAT_VERSION,
        "model": dict(model.identity),
        "prompt": spec.prompt,
        "duration": float(spec.duration),
        "temperature": float(spec.temperature),
        "top_k": int(spec.top_k),
        "top_p": float(spec.top_p),
        "guidance_scale": float(spec.guidance_scale),
    }
    # Windowing only shapes tracks longer than one window. The backend decides in whole
    # frames (1/50 s), so tracks within a margin of the window count as windowed too.
    if spec.duration + WINDOW_MARGIN > spec.window:
        inputs["window"] = float(spec.window)
        inputs["window_stride"] = float(spec.window_stride)
    return inputs


def continuation_inputs(spec: TrackSpec, source: dict[str, Any]) -> dict[str, Any]:
    """The ``continue`` input of a track that continues audio. ``source`` identifies the
    audio: ``{"audio": sha256 of the file}`` (its content, never its path) or
    ``{"track": NAME, "generation": that track's generation key}``."""
    return {
        **source,
        "seconds": None if spec.continue_seconds is None else float(spec.continue_seconds),
        "include_prompt": bool(spec.include_prompt),
    }


def melody_inputs(digest: str) -> dict[str, Any]:
    """The ``melody`` input of a track that follows a melody: the file's sha256 (its content,
    never its path or mtime)."""
    return {"audio": digest}


def continued_key(inputs: dict[str, Any]) -> str | None:
    """The generation key of the track these generation inputs continue, if any."""
    return (inputs.get("continue") or {}).get("generation")


def track_keys(
    spec: TrackSpec,
    model: ModelRef,
    continuation: dict[str, Any] | None = None,
    melody: dict[str, Any] | None = None,
) -> TrackKeys:
    """``continuation``: the ``continue`` input (``continuation_inputs``) of a track that continues
    audio; ``melody``: the ``melody`` input (``melody_inputs``) of a track that follows a melody."""
    gen_inputs = _generation_inputs(spec, model)
    if continuation is not None:
        gen_inputs["continue"] = continuation
    if melody is not None:
        gen_inputs["melody"] = melody
    # No seed in the spec: derive one from everything else, so the same spec gives the same music.
    seed = spec.seed if spec.seed is not None else int(digest(gen_inputs)[:8], 16)
    gen_inputs["seed"] = int(seed)
    generation = digest(gen_inputs)
    render_inputs: dict[str, Any] = {
        "generation": generation,
        "encoder": ENCODER_VERSION,
        "resampler": RESAMPLER,
        "sample_rate": int(spec.sample_rate),
        "formats": sorted(spec.formats),
    }
    if "ogg" in spec.formats:
        render_inputs["ogg_quality"] = float(spec.ogg_quality)
    if "mp3" in spec.formats:
        render_inputs["mp3_quality"] = int(spec.mp3_quality)
    if spec.channels is not None:
        render_inputs["channels"] = int(spec.channels)
    if spec.loop_crossfade is not None:
        render_inputs["loop_crossfade"] = float(spec.loop_crossfade)
    render_inputs["tempo"] = spec.tempo
    if spec.measures_tempo:
        render_inputs["tempo_analysis"] = TEMPO_ANALYSIS_VERSION
        render_inputs["bar_beats"] = int(spec.bar_beats)
    if spec.loop_crossfade is not None and spec.measures_tempo:
        render_inputs["loop_bars"] = spec.loop_bars if spec.loop_bars is not None else "auto"
        render_inputs["loop_start"] = spec.loop_start
        render_inputs["loop_crossfade_set"] = bool(spec.loop_crossfade_set)
        render_inputs["bpm_hint"] = spec.loop_bpm_hint
    render_inputs["loudness"] = spec.loudness_target
    if spec.loudness_target is not None:
        render_inputs["true_peak"] = float(spec.true_peak)
    return TrackKeys(
        seed=int(seed),
        generation=generation,
        render=digest(render_inputs),
        generation_inputs=gen_inputs,
        render_inputs=render_inputs,
    )


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Names of the inputs that differ (``model`` when any part of the model identity does).

    An input on one side only (the window settings of a track that grew past one window,
    the quality of a format just added) follows from another change and is named only
    when nothing else changed.
    """
    if not old:
        return []
    both = [n for n in sorted(set(old) & set(new)) if old[n] != new[n] and n != "generation"]
    return both or [n for n in sorted(set(old) ^ set(new))]
