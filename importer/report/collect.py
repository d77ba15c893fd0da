"""What the report shows: per track its state, facts, published audio and auditioned takes.

Pure reading: the plan (state and reasons, as `status` gives them), the asset index
(facts of the published files) and the audition records (takes in the cache).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..audition import all_records, take_file
from ..config import ProjectConfig
from ..overview import status_rows
from ..plan import Plan

log = logging.getLogger(__name__)

#: Formats a browser's <audio> plays, in the order the report prefers them.
PLAYABLE = ("ogg", "mp3", "flac", "wav")


@dataclass
class Audio:
    """A file to draw and play: where it is, its digest (names the images), its shape."""

    path: Path
    sha256: str
    sample_rate: int
    channels: int
    duration: float
    loop: dict[str, Any] | None = None
    #: Set by ``media``: paths relative to the page.
    src: str = ""
    waveform: str = ""
    spectrogram: str = ""
    seam: str = ""
    seam_duration: float = 0.0


@dataclass
class TakeView:
    take: int
    seed: int
    seconds: float
    preview: bool
    pinned: bool
    lufs: float | None
    true_peak: float | None
    audio: Audio | None


@dataclass
class TrackView:
    name: str | None
    spec: str
    state: str
    reasons: list[str] = field(default_factory=list)
    error: str | None = None
    genre: str | None = None
    model: str | None = None
    seed: int | None = None
    license: str | None = None
    lufs: float | None = None
    true_peak: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    audio: Audio | None = None
    takes: list[TakeView] = field(default_factory=list)
    #: Measured vs declared tempo (``overview.tempo_summary``); ``None``: not measured.
    tempo: dict[str, Any] | None = None


def collect(config: ProjectConfig, plan: Plan) -> list[TrackView]:
    entries = plan.index.get("tracks", {})
    specs = {tp.name: tp.track for tp in plan.tracks}
    records = all_records(config)
    views = []
    for row in status_rows(config, plan):
        view = TrackView(
            row.name,
            row.spec,
            row.state,
            row.reasons,
            row.error,
            license=row.license,
            model=row.model,
            lufs=row.lufs,
            true_peak=row.true_peak,
            tempo=row.tempo,
        )
        entry = entries.get(row.name or "")
        track = specs.get(row.name or "")
        if track is not None:
            view.genre, view.seed, view.meta = track.spec.genre, track.keys.seed, track.spec.meta
        if entry is not None:
            view.genre = view.genre or entry.get("genre")
            view.seed = entry.get("seed", view.seed)
            view.meta = view.meta or entry.get("meta", {})
            view.audio = _published_audio(config, entry)
        if row.name in records:
            pinned_seed = track.spec.seed if track is not None else None
            view.takes = _take_views(config, records[row.name], pinned_seed)
        views.append(view)
    return views


def _published_audio(config: ProjectConfig, entry: dict[str, Any]) -> Audio | None:
    files = entry.get("files", {})
    fmt = next((f for f in PLAYABLE if f in files), None)
    if fmt is None or not (config.root / files[fmt]["path"]).is_file():
        return None
    return Audio(
        config.root / files[fmt]["path"],
        files[fmt]["sha256"],
        int(entry["sample_rate"]),
        int(entry["channels"]),
        float(entry["duration"]),
        entry.get("loop"),
    )


def _take_views(config: ProjectConfig, record: dict[str, Any], pinned_seed: int | None) -> list[TakeView]:
    """The takes of an audition record; a record this version cannot read shows none."""
    try:
        return [_take_view(config, take, pinned_seed) for take in record["takes"] if take.get("action") != "failed"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning(
            "audition record of %s unreadable (%s: %s): audition again", record.get("name"), type(exc).__name__, exc
        )
        return []


def _take_view(config: ProjectConfig, take: dict[str, Any], pinned_seed: int | None) -> TakeView:
    files = take.get("files", {})
    measured = ((take.get("loudness") or {}).get("files") or {}).values()
    lufs = [m["integrated"] for m in measured if m.get("integrated") is not None]
    peaks = [m["true_peak"] for m in measured if m.get("true_peak") is not None]
    audio = None
    fmt = next((f for f in PLAYABLE if f in files), None)
    path = take_file(config, take, fmt) if fmt else None
    if fmt and path is not None:
        audio = Audio(
            path,
            files[fmt]["sha256"],
            int(take["sample_rate"]),
            int(take["channels"]),
            float(take["duration"]),
            take.get("loop"),
        )
    return TakeView(
        int(take["take"]),
        int(take["seed"]),
        float(take["seconds"]),
        bool(take.get("preview")),
        pinned_seed == take["seed"],
        min(lufs) if lufs else None,
        max(peaks) if peaks else None,
        audio,
    )
