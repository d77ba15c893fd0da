"""Parse and validate ``.trackspec`` files into ``TrackSpec`` values.

A spec is layered: built-in defaults, then the project's ``[defaults]``, then the file.
Every problem is reported with the file, line, column and field; unknown keys get a
"did you mean". Parsing never touches audio or models.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Location, SpecError
from .fields import FREE_TABLES, TABLES, TOP_FIELDS, Field, FieldProblem, json_value, suggestion
from .generate.base import DEFAULT_STRIDE_FRACTION
from .layout import SPEC_SUFFIX
from .output_settings import declared_bpm, default_crossfade, target_for
from .tomlsource import TomlDocument, read_toml


@dataclass(frozen=True)
class TrackSpec:
    """One validated track. ``seed`` is ``None`` until keys derive it."""

    path: Path
    name: str
    genre: str
    description: str
    prompt: str
    duration: float
    seed: int | None
    model: str
    revision: str
    temperature: float
    top_k: int
    top_p: float
    guidance_scale: float
    window: float
    window_stride: float
    formats: tuple[str, ...]
    sample_rate: int
    ogg_quality: float
    mp3_quality: int
    meta: dict[str, Any] = field(default_factory=dict)
    #: Integrated loudness in LUFS the files are brought to; ``None``: as generated.
    loudness_target: float | None = None
    #: True-peak ceiling in dBTP, held in the decoded files.
    true_peak: float = -1.0
    #: Seconds of tail crossfaded into the head; ``None``: the track does not loop.
    loop_crossfade: float | None = None
    #: 1 or 2; ``None``: as the model makes them.
    channels: int | None = None
    #: ``"auto"``: tempo, beats and downbeats are measured for a looped track; ``"on"``: for
    #: every track; ``"off"``: never (``measures_tempo``).
    tempo: str = "auto"
    bar_beats: int = 4
    #: Whole bars in a loop; ``None``: as many as fit.
    loop_bars: int | None = None
    #: ``None`` (loop the whole file), ``"auto"``, bars (int) or seconds (float).
    loop_start: int | float | str | None = None
    #: Whether ``loop_crossfade`` was set (else: one bar at the measured tempo, and
    #: ``loop_crossfade`` is only the fallback's: one bar at ``meta.bpm``, else 2 s).
    loop_crossfade_set: bool = False
    #: ``meta.bpm`` of a looped track (it centres the tempo analysis); ``None`` otherwise.
    loop_bpm_hint: float | None = None
    #: What the track continues: a path relative to the repo root, or ``track:NAME``.
    continue_from: str | None = None
    #: Seconds of the end of ``continue_from`` that prime the model; ``None``: the default.
    continue_seconds: float | None = None
    #: Publish the prompt audio (as the codec resynthesises it) before the continuation.
    include_prompt: bool = False
    #: An audio file (relative to the repo root) whose melody a MusicGen-Melody model follows.
    melody: str | None = None

    @property
    def measures_tempo(self) -> bool:
        """Whether the render measures tempo and beats: ``on``, or ``auto`` for a looped track
        (the analysis costs seconds of CPU per build process, for librosa's start-up)."""
        return self.tempo == "on" or (self.tempo == "auto" and self.loop_crossfade is not None)

    @property
    def continues_track(self) -> str | None:
        """The name of the track this one continues, if it continues one."""
        if self.continue_from and self.continue_from.startswith(TRACK_PREFIX):
            return self.continue_from[len(TRACK_PREFIX) :]
        return None

    @property
    def audio_inputs(self) -> list[str]:
        """The audio files of the repo this track's audio depends on (``continue_from`` unless
        it names a track, ``melody``), as the spec names them: relative to the repo root.
        Their content is in the generation key; a watcher or a no-op record watches them."""
        files = []
        if self.continue_from is not None and self.continues_track is None:
            files.append(self.continue_from)
        if self.melody is not None:
            files.append(self.melody)
        return files


#: ``continue_from = "track:NAME"`` continues another track's generated audio.
TRACK_PREFIX = "track:"


def builtin_defaults() -> dict[str, Any]:
    """The nested defaults of every field, shaped like a spec file."""
    values: dict[str, Any] = {k: f.default for k, f in TOP_FIELDS.items() if f.default is not None}
    for table_name, fields in TABLES.items():
        values[table_name] = {k: f.default for k, f in fields.items() if f.default is not None}
    values["meta"] = {}
    return values


def check_table(
    doc: TomlDocument,
    data: dict,
    fields: dict[str, Field],
    prefix: tuple[str, ...],
    error: type,
    tables: dict[str, dict[str, Field]] | None = None,
    free_tables: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Validate one TOML table against ``fields`` (and nested ``tables``); return clean values."""
    tables = tables or {}
    allowed = list(fields) + list(tables) + list(free_tables)
    clean: dict[str, Any] = {}
    for key, value in data.items():
        path = (*prefix, key)
        dotted = ".".join(path)
        if key in fields:
            try:
                clean[key] = fields[key].check(value)
            except FieldProblem as exc:
                raise error(doc.locate(*path), str(exc), dotted) from None
        elif key in tables or key in free_tables:
            if not isinstance(value, dict):
                raise error(doc.locate(*path), f"must be a table ([{dotted}])", dotted)
            if key in tables:
                clean[key] = check_table(doc, value, tables[key], path, error)
                continue
            clean[key] = {}
            for sub, sub_value in value.items():
                try:
                    clean[key][sub] = json_value(sub_value)
                except FieldProblem as exc:
                    raise error(doc.locate(*path, sub), str(exc), f"{dotted}.{sub}") from None
        else:
            raise error(doc.locate(*path), f"unknown key{suggestion(key, allowed)}", dotted)
    return clean


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Nested merge: tables merge key by key, everything else is replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_spec(path: Path, defaults: dict[str, Any], max_duration: float) -> TrackSpec:
    """Read and validate one spec; ``defaults`` are built-in + project defaults, merged."""
    doc = read_toml(path, SpecError)
    own = check_table(doc, doc.data, TOP_FIELDS, (), SpecError, TABLES, FREE_TABLES)
    values = merge(defaults, own)

    if "prompt" not in values:
        raise SpecError(Location(path, 1, 1), "missing required field (the text MusicGen should follow)", "prompt")
    if "name" not in own:
        stem = path.name[: -len(SPEC_SUFFIX)] if path.name.endswith(SPEC_SUFFIX) else path.stem
        try:
            values["name"] = TOP_FIELDS["name"].check(stem)
        except FieldProblem as exc:
            raise SpecError(
                Location(path, 1, 1),
                f'the file name gives no valid track name: {exc}; set `name = "..."` in the spec',
                "name",
            ) from None
    if values["duration"] > max_duration:
        raise SpecError(
            doc.locate("duration"),
            f"{values['duration']:g} s is out of range; allowed: "
            f"(0, {max_duration:g}] (raise max_duration in trackspec.toml)",
            "duration",
        )

    gen, out = values["generation"], values["output"]
    stride = gen.get("window_stride")
    if stride is None:
        stride = round(gen["window"] * DEFAULT_STRIDE_FRACTION, 6)
    elif stride >= gen["window"]:
        raise SpecError(
            doc.locate("generation", "window_stride"),
            f"{stride:g} s must be shorter than the window ({gen['window']:g} s)",
            "generation.window_stride",
        )
    loop_crossfade = _loop_crossfade(doc, out, values, float(values["duration"]))
    _check_continuation(doc, gen, float(values["duration"]))
    return TrackSpec(
        path=path,
        name=values["name"],
        genre=values["genre"],
        description=values.get("description", ""),
        prompt=" ".join(values["prompt"].split()),  # layout of a multi-line prompt is not content
        duration=float(values["duration"]),
        seed=values.get("seed"),
        model=gen["model"],
        revision=gen["revision"],
        temperature=gen["temperature"],
        top_k=gen["top_k"],
        top_p=gen["top_p"],
        guidance_scale=gen["guidance_scale"],
        window=gen["window"],
        window_stride=float(stride),
        formats=tuple(out["formats"]),
        sample_rate=out["sample_rate"],
        ogg_quality=float(out["ogg_quality"]),
        mp3_quality=int(out["mp3_quality"]),
        meta=values.get("meta", {}),
        loudness_target=target_for(out["loudness_profile"], out.get("loudness")),
        true_peak=float(out["true_peak"]),
        loop_crossfade=loop_crossfade,
        channels=out.get("channels"),
        tempo=out["tempo"],
        bar_beats=int(out["bar_beats"]),
        loop_bars=None if out["loop_bars"] == "auto" else int(out["loop_bars"]),
        loop_start=out.get("loop_start"),
        loop_crossfade_set=out["loop"] and "loop_crossfade" in out,
        loop_bpm_hint=_loop_bpm_hint(doc, out, values),
        continue_from=gen.get("continue_from"),
        continue_seconds=gen.get("continue_seconds"),
        include_prompt=bool(gen.get("include_prompt", False)),
        melody=gen.get("melody"),
    )


def _loop_bpm_hint(doc: TomlDocument, out: dict[str, Any], values: dict[str, Any]) -> float | None:
    """``meta.bpm`` where it steers the tempo analysis: looped tracks whose tempo is measured."""
    bpm = values.get("meta", {}).get("bpm")
    if not out["loop"] or out["tempo"] == "off" or bpm is None:
        return None
    try:
        return declared_bpm(bpm)
    except ValueError as exc:
        raise SpecError(
            doc.locate("meta", "bpm"), f"{exc} (it centres the tempo analysis of a loop)", "meta.bpm"
        ) from None


def _check_continuation(doc: TomlDocument, gen: dict[str, Any], duration: float) -> None:
    """``continue_from`` names a track or a file; the primed seconds fit a window."""
    source = gen.get("continue_from")
    for name in ("continue_seconds", "include_prompt"):
        if name in gen and source is None and gen[name] not in (None, False):
            raise SpecError(
                doc.locate("generation", name), "needs continue_from (the audio to continue)", f"generation.{name}"
            )
    if source is None:
        return
    if source.startswith(TRACK_PREFIX):
        try:
            TOP_FIELDS["name"].check(source[len(TRACK_PREFIX) :])
        except FieldProblem as exc:
            raise SpecError(
                doc.locate("generation", "continue_from"), f"names no track: {exc}", "generation.continue_from"
            ) from None
    seconds = gen.get("continue_seconds")
    if seconds is not None and seconds >= gen["window"]:
        raise SpecError(
            doc.locate("generation", "continue_seconds"),
            f"{seconds:g} s must be shorter than the window ({gen['window']:g} s): the model "
            "continues within one window",
            "generation.continue_seconds",
        )
    if seconds is not None and gen.get("include_prompt") and seconds >= duration:
        raise SpecError(
            doc.locate("generation", "continue_seconds"),
            f"{seconds:g} s must be shorter than the track ({duration:g} s), which includes it (include_prompt = true)",
            "generation.continue_seconds",
        )


def default_continue_seconds(window: float) -> float:
    """Seconds primed when ``continue_seconds`` is not set: the window minus 1 s (half a short window)."""
    return window - 1.0 if window > 2.0 else window / 2


def _loop_crossfade(doc: TomlDocument, out: dict[str, Any], values: dict[str, Any], duration: float) -> float | None:
    """The crossfade of a looped track: as set, else one bar at ``meta.bpm``, else 2 s."""
    if not out["loop"]:
        return None
    crossfade = out.get("loop_crossfade")
    if crossfade is None:
        bpm = values.get("meta", {}).get("bpm")
        try:
            crossfade = default_crossfade(bpm, int(out["bar_beats"]))
        except ValueError as exc:
            raise SpecError(doc.locate("meta", "bpm"), f"{exc} (it sets the loop crossfade)", "meta.bpm") from None
    if crossfade * 2 >= duration:
        where = ("output", "loop_crossfade") if "loop_crossfade" in out else ("output", "loop")
        raise SpecError(
            doc.locate(*where),
            f"the loop crossfade ({crossfade:g} s) must be shorter than half "
            f"the track ({duration:g} s): shorten it with loop_crossfade or lengthen the track",
            ".".join(where),
        )
    return float(crossfade)


def discover_specs(
    root: Path, spec_dirs: list[Path], skip: list[Path], walked: list[Path] | None = None
) -> Iterator[Path]:
    """Every ``*.trackspec`` under ``spec_dirs`` (sorted): hidden folders, ``skip`` and what the
    repo's ``.gitignore`` files ignore (``gitignore``) are pruned, so an engine's generated
    trees (Unity's ``Library/``, Godot's ``.godot/``) are never read.

    ``walked``, if given, receives every folder listed (or that could not be listed) and every
    ignore file read: their stat says whether the result can have changed (the no-op record,
    ``fastpath``).
    """
    from .gitignore import IGNORE_FILE, Ignores, path_ignored

    def unlisted(exc: OSError) -> None:
        if walked is not None and exc.filename:
            walked.append(Path(exc.filename))

    read: list[str] | None = [] if walked is not None else None
    root_str = str(root)
    skip_strs = {str(p.resolve()) for p in skip}
    seen: set[Path] = set()
    for top in spec_dirs:  # inside the root (``config`` checks)
        top_str = str(top)
        if not top.is_dir() or (top_str != root_str and path_ignored(root_str, top_str, True)):
            continue  # a configured folder the repo ignores holds no sources
        rules: dict[str, Ignores] = {}
        for dirpath, dirnames, filenames in os.walk(top, onerror=unlisted):
            here = Path(dirpath)
            if walked is not None:
                walked.append(here)
            # Under the (resolved) root: the relative path is a slice, not os.path.relpath's work.
            rel_here = dirpath[len(root_str) + 1 :].replace(os.sep, "/") if dirpath != root_str else "."
            if rel_here == ".":
                ignores = Ignores.at_root(root_str, read)
            else:
                above = rules.get(os.path.dirname(dirpath)) or Ignores.for_folder(
                    root_str, os.path.dirname(dirpath), read
                )
                ignores = above.descend(rel_here, dirpath, IGNORE_FILE in filenames)
            rules[dirpath] = ignores
            prefix = "" if rel_here == "." else rel_here + "/"
            # The walk starts at resolved folders and never follows a link, so a joined path is
            # already resolved unless it is a link itself (which is listed, not walked).
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not d.startswith(".")
                and os.path.join(dirpath, d) not in skip_strs
                and not ignores.ignored(prefix + d, True)
            )
            for name in sorted(filenames):
                if (
                    name.endswith(SPEC_SUFFIX)
                    and not name.startswith(".")
                    and not ignores.ignored(prefix + name, False)
                ):
                    path = here / name
                    if path not in seen:
                        seen.add(path)
                        yield path
    if walked is not None and read:
        walked.extend(Path(p) for p in dict.fromkeys(read))
