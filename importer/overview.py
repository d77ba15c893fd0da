"""What `plan` and `status` show: a plan turned into rows a person (or a tool) can read.

Pure: reads the plan, the index and the outputs' stat; writes nothing, imports nothing
heavy. The words match the build's own output, plus what the plan knows about the cache
("cache hit", "raw audio cached").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .config import ProjectConfig, rel
from .index import output_paths
from .output_settings import TEMPO_WARN_FRACTION, tempo_difference
from .plan import Plan, TrackPlan

#: What each action means, for `plan`'s legend and its JSON ``explanation``.
ACTION_MEANING = {
    "fresh": "up to date: nothing to do",
    "index": "only the index entry changes",
    "restore": "cache hit: the encoded files are copied from the cache",
    "encode": "the raw audio is cached: resample and encode again, no generation",
    "generate": "MusicGen must generate the audio",
    "remove": "the spec is gone: its files and index entry will be removed",
    "failed": "the spec cannot be built: fix the error; its last good asset stays",
}


@dataclass
class PlanRow:
    name: str | None
    spec: str
    action: str
    reasons: list[str] = field(default_factory=list)
    explanation: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    #: The track this one continues (``continue_from = "track:NAME"``): generated after it.
    continues: str | None = None


@dataclass
class StatusRow:
    name: str | None
    spec: str
    state: str  # fresh | stale | failed | removed
    reasons: list[str] = field(default_factory=list)
    duration: float | None = None
    model: str | None = None
    formats: list[str] = field(default_factory=list)
    bytes: dict[str, int] = field(default_factory=dict)
    built: str | None = None
    error: str | None = None
    license: str | None = None
    #: Integrated loudness (LUFS) and true peak (dBTP) measured on the published files:
    #: the quietest and the highest reading over the formats.
    lufs: float | None = None
    true_peak: float | None = None
    loop: bool = False
    #: Measured vs declared tempo of the published files: ``{"bpm", "declared", "difference",
    #: "warning"}`` (difference relative to the declared; warning past 3 %); ``None``: not measured.
    tempo: dict[str, Any] | None = None
    #: The track this one continues (``continue_from = "track:NAME"``).
    continues: str | None = None


def plan_rows(config: ProjectConfig, plan: Plan) -> list[PlanRow]:
    rows = [
        PlanRow(None, rel(config, f.path), "failed", explanation=ACTION_MEANING["failed"], error=f.message)
        for f in plan.failures
    ]
    for tp in plan.tracks:
        outputs = {fmt: rel(config, p) for fmt, p in output_paths(config, tp.track.spec).items()}
        rows.append(
            PlanRow(
                tp.name,
                rel(config, tp.track.spec.path),
                tp.action,
                list(tp.reasons),
                ACTION_MEANING[tp.action],
                outputs,
                continues=tp.track.spec.continues_track,
            )
        )
    rows += [
        PlanRow(r.name, r.entry.get("spec", ""), "remove", [r.reason], ACTION_MEANING["remove"]) for r in plan.removals
    ]
    return rows


def status_rows(config: ProjectConfig, plan: Plan) -> list[StatusRow]:
    tracks = plan.index.get("tracks", {})
    rows = [StatusRow(None, rel(config, f.path), "failed", error=f.message) for f in plan.failures]
    for tp in plan.tracks:
        rows.append(_track_status(config, tp, tracks.get(tp.name)))
    for removal in plan.removals:
        entry = removal.entry
        rows.append(
            StatusRow(
                removal.name,
                entry.get("spec", ""),
                "removed",
                [removal.reason],
                entry.get("duration"),
                entry.get("model"),
                sorted(entry.get("files", {})),
                {f: i.get("bytes", 0) for f, i in entry.get("files", {}).items()},
                _built(config, entry),
            )
        )
        _add_audio_facts(rows[-1], entry)
    return rows


def _add_audio_facts(row: StatusRow, entry: dict[str, Any]) -> None:
    """Licence, loop and measured loudness of a published entry."""
    row.license = entry.get("license", row.license)
    row.loop = bool(entry.get("loop"))
    measured = (entry.get("loudness") or {}).get("files", {}).values()
    readings = [m["integrated"] for m in measured if m.get("integrated") is not None]
    peaks = [m["true_peak"] for m in measured if m.get("true_peak") is not None]
    row.lufs = min(readings) if readings else None
    row.true_peak = max(peaks) if peaks else None
    row.tempo = tempo_summary(entry.get("tempo"))


def tempo_summary(tempo: Any) -> dict[str, Any] | None:
    """Measured vs declared tempo of an index entry's ``tempo`` (for status and the report)."""
    if not isinstance(tempo, dict) or not isinstance(tempo.get("bpm"), (int, float)):
        return None
    difference = tempo_difference(tempo)
    return {
        "bpm": tempo["bpm"],
        "declared": tempo.get("declared"),
        "difference": None if difference is None else round(difference, 4),
        "warning": difference is not None and abs(difference) > TEMPO_WARN_FRACTION,
    }


def tempo_text(summary: dict[str, Any] | None) -> str:
    """``92.5 BPM (declared 90, +2.8 %)``; ``-`` when not measured."""
    if summary is None:
        return "-"
    text = f"{summary['bpm']:.1f} BPM"
    if summary["declared"] is not None:
        text += f" (declared {summary['declared']:g}, {100 * summary['difference']:+.1f} %"
        text += ", over 3 %)" if summary["warning"] else ")"
    return text


def _track_status(config: ProjectConfig, tp: TrackPlan, entry: dict[str, Any] | None) -> StatusRow:
    spec = tp.track.spec
    row = StatusRow(
        tp.name,
        rel(config, spec.path),
        "fresh" if tp.action == "fresh" else "stale",
        list(tp.reasons),
        spec.duration,
        spec.model,
        list(spec.formats),
        license=tp.track.license,
        continues=spec.continues_track,
    )
    if entry is not None:
        row.model = entry.get("model", row.model)
        row.bytes = {fmt: info.get("bytes", 0) for fmt, info in entry.get("files", {}).items()}
        row.built = _built(config, entry)
        _add_audio_facts(row, entry)
    if tp.action == "index":
        row.reasons = row.reasons or ["index entry changed"]
    return row


def _built(config: ProjectConfig, entry: dict[str, Any]) -> str | None:
    """When the newest published file of an entry was written (UTC, ISO 8601)."""
    mtimes = []
    for info in entry.get("files", {}).values():
        try:
            mtimes.append((config.root / info["path"]).stat().st_mtime)
        except (OSError, KeyError):
            pass
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(mtimes))) if mtimes else None
