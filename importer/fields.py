"""The fields of a ``.trackspec``: names, types, ranges and defaults, in one table.

Both the spec parser and the ``[defaults]`` table of ``trackspec.toml`` validate against
this table, so a field is described once. Validation returns plain Python values; the
caller attaches file and line to any problem.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NAME_PATTERN = re.compile(r"^[a-z0-9_-]+$")
SUPPORTED_FORMATS = ("ogg", "mp3", "wav", "flac")
#: Every rate both Vorbis and MP3 can carry.
SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
MAX_SEED = 2**63 - 1
#: Longest prompt accepted: MusicGen's text encoder reads a few hundred tokens, and a huge
#: prompt would only cost a model load (and memory) before failing.
MAX_PROMPT_CHARS = 20_000
#: File names Windows reserves (with any extension): a track or genre named so could not be
#: checked out or opened there.
WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)


class FieldProblem(ValueError):
    """A value is wrong; the message says what is allowed."""


def _number(value: Any, *, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldProblem(f"must be {'an integer' if integer else 'a number'}, got {_describe(value)}")
    if integer and not isinstance(value, int):
        raise FieldProblem(f"must be an integer, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldProblem(f"must be a finite number, got {value!r}")
    return value


def _describe(value: Any) -> str:
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def ranged(lo: float | None, hi: float | None, *, integer: bool = False, lo_open: bool = False) -> Callable:
    """A number check: ``lo <= v <= hi`` (``lo < v`` when ``lo_open``)."""

    def check(value: Any) -> float | int:
        number = _number(value, integer=integer)
        too_low = lo is not None and (number <= lo if lo_open else number < lo)
        too_high = hi is not None and number > hi
        if too_low or too_high:
            left = "(" if lo_open else "["
            raise FieldProblem(f"{number!r} is out of range; allowed: {left}{_fmt(lo)}, {_fmt(hi)}]")
        return number if integer else float(number)

    return check


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "inf"
    return f"{bound:g}"


def text(*, required: bool = False, max_length: int | None = None) -> Callable:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldProblem(f"must be a string, got {_describe(value)}")
        if required and not value.strip():
            raise FieldProblem("must not be empty")
        if max_length is not None and len(value) > max_length:
            raise FieldProblem(f"is {len(value)} characters long; at most {max_length} are allowed")
        return value

    return check


def identifier(value: Any) -> str:
    """A name that becomes a file or folder name: never a path."""
    if not isinstance(value, str):
        raise FieldProblem(f"must be a string, got {_describe(value)}")
    if not NAME_PATTERN.match(value) or len(value) > 100:
        raise FieldProblem(
            f"{value!r} is not allowed: use 1-100 characters of lowercase a-z, 0-9, '_' and '-' "
            "(it becomes a file or folder name)"
        )
    if value.split(".", 1)[0] in WINDOWS_RESERVED:
        raise FieldProblem(
            f"{value!r} is a device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9); choose another name"
        )
    return value


def formats(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise FieldProblem(f"must be a non-empty array of formats from {list(SUPPORTED_FORMATS)}")
    seen: list[str] = []
    for item in value:
        if item not in SUPPORTED_FORMATS:
            raise FieldProblem(f"{item!r} is not a supported format; allowed: {list(SUPPORTED_FORMATS)}")
        if item in seen:
            raise FieldProblem(f"{item!r} is listed twice")
        seen.append(item)
    return tuple(seen)


def sample_rate(value: Any) -> int:
    rate = _number(value, integer=True)
    if rate not in SAMPLE_RATES:
        raise FieldProblem(f"{rate} Hz is not supported; allowed: {list(SAMPLE_RATES)}")
    return int(rate)


def choice(*allowed: Any) -> Callable:
    """One of ``allowed`` (strings or integers; a boolean is never an integer here)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            listed = ", ".join(repr(a) if isinstance(a, str) else str(a) for a in allowed)
            raise FieldProblem(f"{value!r} is not allowed; use one of {listed}")
        return value

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldProblem(f"must be true or false, got {_describe(value)}")
    return value


def json_value(value: Any) -> Any:
    """A free ``[meta]`` value as the JSON index can hold it: dates and times become ISO
    strings; NaN and infinities are refused (JSON has no such numbers)."""
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldProblem(f"{value!r} cannot be stored in the JSON index; use a finite number or a string")
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date too
        return value.isoformat()
    return value


def loop_bars(value: Any) -> str | int:
    """``"auto"`` or a whole number of bars, 1 or more."""
    if value == "auto":
        return value
    if isinstance(value, str):
        raise FieldProblem(f'{value!r} is not allowed; use "auto" or a whole number of bars')
    return ranged(1, 100_000, integer=True)(value)


def loop_start(value: Any) -> str | int | float:
    """``"auto"``, a whole number of bars (integer) or seconds (a number with a point)."""
    if value == "auto":
        return value
    if isinstance(value, str):
        raise FieldProblem(f'{value!r} is not allowed; use "auto", a number of bars (2) or of seconds (4.5)')
    if isinstance(value, int) and not isinstance(value, bool):
        return ranged(0, 100_000, integer=True)(value)
    return ranged(0.0, 3600.0)(value)


@dataclass(frozen=True)
class Field:
    check: Callable[[Any], Any]
    default: Any = None
    doc: str = ""


#: Top-level fields of a spec (``None`` default: required or derived).
TOP_FIELDS: dict[str, Field] = {
    "name": Field(identifier, None, "track name; default: the file name without .trackspec"),
    "genre": Field(identifier, "synthwave", "output subfolder under the assets directory"),
    "description": Field(text(), "", "free text for people; part of no key"),
    "prompt": Field(text(required=True, max_length=MAX_PROMPT_CHARS), None, "what MusicGen should make (required)"),
    "duration": Field(ranged(0.0, None, lo_open=True), 30.0, "seconds of audio"),
    "seed": Field(ranged(0, MAX_SEED, integer=True), None, "random seed; default: derived from the spec"),
}

GENERATION_FIELDS: dict[str, Field] = {
    "model": Field(text(required=True), "facebook/musicgen-medium", "hub id or local model directory"),
    "revision": Field(text(required=True), "main", "hub revision (branch, tag or commit) of a hub model"),
    "temperature": Field(ranged(0.0, 10.0), 1.0, "sampling temperature; 0 = always the likeliest token"),
    "top_k": Field(ranged(0, 2048, integer=True), 250, "sample among the k likeliest tokens; 0 = off"),
    "top_p": Field(ranged(0.0, 1.0), 0.0, "nucleus sampling; when > 0 it replaces top_k"),
    "guidance_scale": Field(ranged(1.0, 20.0), 3.0, "classifier-free guidance strength"),
    "window": Field(ranged(0.2, 40.0), 30.0, "seconds per generation window (MusicGen: 30)"),
    "window_stride": Field(
        ranged(0.0, 40.0, lo_open=True), None, "seconds each further window adds; default: 0.6 x window"
    ),
    "continue_from": Field(
        text(required=True), None, 'audio file (path in the repo) or "track:NAME" the track continues'
    ),
    "continue_seconds": Field(
        ranged(0.0, 40.0, lo_open=True),
        None,
        "seconds of the end of continue_from that prime the model; default: all of it, at most the window minus 1 s",
    ),
    "include_prompt": Field(boolean, False, "publish continue_from's audio (resynthesised) before the new music"),
    "melody": Field(
        text(required=True), None, "audio file (path in the repo) whose melody a MusicGen-Melody model follows"
    ),
}

OUTPUT_FIELDS: dict[str, Field] = {
    "formats": Field(formats, ("ogg", "mp3"), "files to write: ogg, mp3, wav, flac"),
    "sample_rate": Field(sample_rate, 44100, "output sample rate in Hz"),
    "ogg_quality": Field(ranged(-1.0, 10.0), 6.0, "Vorbis VBR quality, -1 to 10"),
    "mp3_quality": Field(ranged(0, 9, integer=True), 4, "LAME VBR quality, 0 (best) to 9"),
    "loudness_profile": Field(
        choice("web", "mobile", "console", "none"),
        "web",
        "integrated loudness: web -16, mobile -18, console -23 LUFS; none = as generated",
    ),
    "loudness": Field(ranged(-70.0, 0.0, lo_open=True), None, "explicit target in LUFS; overrides the profile"),
    "true_peak": Field(ranged(-20.0, 0.0), -1.0, "true-peak ceiling in dBTP, held in the decoded files"),
    "loop": Field(boolean, False, "make the track loop seamlessly and write its loop points"),
    "loop_crossfade": Field(
        ranged(0.0, 60.0), None, "seconds of the tail crossfaded into the head; default: one bar at meta.bpm, else 2"
    ),
    "channels": Field(choice(1, 2), None, "1 or 2; default: as the model makes them (stereo models: 2)"),
    "tempo": Field(
        choice("auto", "on", "off"),
        "auto",
        "measure tempo, beats and downbeats (index, status, bar-aligned loops): auto = looped "
        "tracks, on = every track, off = none",
    ),
    "bar_beats": Field(ranged(1, 16, integer=True), 4, "beats per bar (the metre) for downbeats and loop bars"),
    "loop_bars": Field(
        lambda v: loop_bars(v), "auto", "whole bars in the loop at the measured tempo; auto: as many as fit"
    ),
    "loop_start": Field(
        lambda v: loop_start(v),
        None,
        "auto, <bars> (integer) or <seconds> (number): keep an intro, loop from that "
        "downbeat; default: loop the whole file",
    ),
}

#: Tables of a spec and their fields; ``meta`` is free-form.
TABLES: dict[str, dict[str, Field]] = {"generation": GENERATION_FIELDS, "output": OUTPUT_FIELDS}
FREE_TABLES = ("meta",)


def suggestion(key: str, allowed: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
