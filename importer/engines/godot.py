"""Godot 4 ``.import`` sidecars for the published OGG and MP3 files.

Godot imports an OGG or MP3 with ``loop = false`` unless the file's ``<file>.import`` says
otherwise, and ignores LOOPSTART tags. Its importers (``ResourceImporterOggVorbis``,
importer ``oggvorbisstr``, and ``ResourceImporterMP3``, importer ``mp3``) take the options
``loop``, ``loop_offset`` (seconds), ``bpm``, ``beat_count`` and ``bar_beats``. The editor
writes the sidecar in this layout (``EditorFileSystem::_reimport_file``)::

    [remap]

    importer="oggvorbisstr"
    type="AudioStreamOggVorbis"
    uid="uid://..."
    path="res://.godot/imported/boss.ogg-<md5 of the res:// path>.oggvorbisstr"

    [deps]

    source_file="res://music/boss.ogg"
    dest_files=["res://.godot/imported/boss.ogg-<md5>.oggvorbisstr"]

    [params]

    loop=true
    ...

trackspec owns ``[remap] importer`` and ``type``, ``[deps] source_file`` and the five
``[params]`` above. Everything else in an existing sidecar (``uid``, ``path``,
``dest_files``, keys of newer Godot versions such as ``edit/volume_db``, comments) is kept
byte for byte, so the resource UID scenes refer to stays stable. A new sidecar gets a UID
derived from its ``res://`` path (the same on every machine and every rebuild) in Godot's
own text form. A file is written only when its bytes change.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fsutil import atomic_write_bytes

if TYPE_CHECKING:
    from ..config import ProjectConfig
    from . import SyncResult

log = logging.getLogger(__name__)

PROJECT_FILE = "project.godot"
SIDECAR_SUFFIX = ".import"
#: Where Godot 4 keeps imported resources (``ProjectSettings::get_imported_files_path``).
IMPORTED_DIR = "res://.godot/imported"


@dataclass(frozen=True)
class Importer:
    name: str
    resource_type: str
    save_extension: str


#: Godot's importer for each format trackspec writes that Godot streams.
IMPORTERS: dict[str, Importer] = {
    "ogg": Importer("oggvorbisstr", "AudioStreamOggVorbis", "oggvorbisstr"),
    "mp3": Importer("mp3", "AudioStreamMP3", "mp3str"),
}
#: The ``[params]`` trackspec owns, in Godot's order, with Godot's defaults.
PARAM_DEFAULTS: dict[str, Any] = {"loop": False, "loop_offset": 0, "bpm": 0, "beat_count": 0, "bar_beats": 4}
#: Godot's UID alphabet and base (``ResourceUID::id_to_text``: 'z' and '9' are never used).
_UID_CHARS = "abcdefghijklmnopqrstuvwxy012345678"


# --------------------------------------------------------------------------- values
def godot_value(value: Any) -> str:
    """``value`` as Godot's ``VariantWriter`` writes it in a ConfigFile."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "0.0"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(godot_value(v) for v in value) + "]"
    raise TypeError(f"no Godot form for {value!r}")


def uid_text(number: int) -> str:
    """A 63-bit id in Godot's ``uid://`` text form."""
    number &= 0x7FFFFFFFFFFFFFFF
    digits = []
    while True:
        number, c = divmod(number, len(_UID_CHARS))
        digits.append(_UID_CHARS[c])
        if not number:
            break
    return "uid://" + "".join(reversed(digits))


def stable_uid(res_path: str) -> str:
    """The UID trackspec gives a new sidecar: a digest of its ``res://`` path."""
    digest = hashlib.sha256(("trackspec:" + res_path).encode("utf-8")).digest()
    return uid_text(int.from_bytes(digest[:8], "big"))


def imported_path(res_path: str, importer: Importer) -> str:
    """Where Godot puts the imported resource (``ResourceFormatImporter::get_import_base_path``)."""
    name = res_path.rsplit("/", 1)[-1]
    return f"{IMPORTED_DIR}/{name}-{hashlib.md5(res_path.encode('utf-8')).hexdigest()}.{importer.save_extension}"


# ------------------------------------------------------------------ the file layout
@dataclass
class Entry:
    """One ``key=value`` (possibly over several lines), or a line that is no entry (``key`` None)."""

    key: str | None
    text: str  # the raw lines, newlines included


@dataclass
class Section:
    name: str | None  # None: lines before the first header
    header: str  # the raw header line(s)
    entries: list[Entry]

    def find(self, key: str) -> Entry | None:
        return next((e for e in self.entries if e.key == key), None)


def _value_complete(text: str) -> bool:
    """Does ``text`` (a value, maybe partial) close every bracket, brace, paren and string?"""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
    return not in_string and depth <= 0


def parse_layout(text: str) -> list[Section]:
    """Split a Godot ConfigFile into sections and entries, keeping every byte."""
    sections = [Section(None, "", [])]
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]") and "=" not in stripped.split("]")[0]:
            sections.append(Section(stripped[1:-1].strip(), line, []))
            i += 1
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip() or stripped.startswith((";", "#")):
            sections[-1].entries.append(Entry(None, line))
            i += 1
            continue
        raw = line
        i += 1
        while not _value_complete(value) and i < len(lines):
            value += lines[i]
            raw += lines[i]
            i += 1
        sections[-1].entries.append(Entry(key.strip(), raw))
    return sections


def render_layout(sections: list[Section]) -> str:
    return "".join(s.header + "".join(e.text for e in s.entries) for s in sections)


def parse_value(raw: str) -> Any:
    """A value as Godot writes it: strings, booleans, numbers and arrays of them; else the raw text."""
    raw = raw.strip()
    if raw in ("true", "false"):
        return raw == "true"
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def read_sidecar(text: str) -> dict[str, dict[str, Any]]:
    """``{section: {key: value}}`` of a sidecar (values by ``parse_value``)."""
    out: dict[str, dict[str, Any]] = {}
    for section in parse_layout(text):
        if section.name is None:
            continue
        table = out.setdefault(section.name, {})
        for entry in section.entries:
            if entry.key is not None:
                table[entry.key] = parse_value(entry.text.partition("=")[2])
    return out


# ------------------------------------------------------------------------ the sidecar
def params_for(entry: dict[str, Any]) -> dict[str, Any]:
    """The ``[params]`` trackspec sets for a track's index entry.

    ``loop``: the index has a loop; ``loop_offset``: its ``start_seconds``; ``bpm``,
    ``beat_count`` and ``bar_beats`` from ``tempo`` (Godot's defaults without one). Godot
    ends a loop after ``beat_count`` beats when ``bpm`` and ``beat_count`` are set, so for a
    looped track ``beat_count`` is written only when those beats end where the loop ends
    (within a millisecond); otherwise it is 0 and Godot loops at the end of the file.
    """
    params = dict(PARAM_DEFAULTS)
    loop = entry.get("loop")
    if isinstance(loop, dict):
        params["loop"] = True
        params["loop_offset"] = float(loop.get("start_seconds") or 0.0)
    tempo = entry.get("tempo")
    if isinstance(tempo, dict) and isinstance(tempo.get("bpm"), (int, float)) and tempo["bpm"] > 0:
        bpm = float(tempo["bpm"])
        params["bpm"] = bpm
        beats = tempo.get("beats")
        if isinstance(beats, int) and beats > 0:
            params["beat_count"] = beats
            rate = entry.get("sample_rate")
            if isinstance(loop, dict) and isinstance(rate, int) and rate > 0:
                loop_end = (int(loop["start"]) + int(loop["length"])) / rate
                if abs(beats * 60.0 / bpm - loop_end) > 0.001:
                    params["beat_count"] = 0
        bar = tempo.get("bar_beats")
        if isinstance(bar, int) and bar >= 2:
            params["bar_beats"] = bar
    return params


def new_sidecar(res_path: str, importer: Importer, params: dict[str, Any]) -> str:
    """A sidecar as the Godot editor writes one, with trackspec's params."""
    imported = imported_path(res_path, importer)
    lines = [
        "[remap]",
        "",
        f"importer={godot_value(importer.name)}",
        f"type={godot_value(importer.resource_type)}",
        f"uid={godot_value(stable_uid(res_path))}",
        f"path={godot_value(imported)}",
        "",
        "[deps]",
        "",
        f"source_file={godot_value(res_path)}",
        f"dest_files={godot_value([imported])}",
        "",
        "[params]",
        "",
    ]
    lines += [f"{key}={godot_value(value)}" for key, value in params.items()]
    return "\n".join(lines) + "\n"


def merge_sidecar(existing: str, res_path: str, importer: Importer, params: dict[str, Any]) -> str:
    """``existing`` with trackspec's keys set; every other byte kept.

    Missing sections are added; a missing ``uid``, ``path`` or ``dest_files`` is added as a
    new sidecar would have it (an existing one is never changed).
    """
    sections = parse_layout(existing)
    if sections[-1].entries and not sections[-1].entries[-1].text.endswith("\n"):
        sections[-1].entries[-1].text += "\n"
    imported = imported_path(res_path, importer)

    def section(name: str) -> Section:
        found = next((s for s in sections if s.name == name), None)
        if found is None:
            last = sections[-1]
            if (last.entries or last.header) and not (last.entries and last.entries[-1].text.strip() == ""):
                last.entries.append(Entry(None, "\n"))
            found = Section(name, f"[{name}]\n", [Entry(None, "\n")])
            sections.append(found)
        return found

    def put(sec: Section, key: str, value: Any, replace: bool = True) -> None:
        entry = sec.find(key)
        text = f"{key}={godot_value(value)}\n"
        if entry is None:
            keyed = [i for i, e in enumerate(sec.entries) if e.key is not None]
            at = keyed[-1] + 1 if keyed else len(sec.entries)
            if not keyed and sec.entries and sec.entries[-1].text.strip() == "" and len(sec.entries) > 1:
                at = len(sec.entries) - 1  # before the blank line that ends the section
            sec.entries.insert(at, Entry(key, text))
        elif replace and parse_value(entry.text.partition("=")[2]) != value:
            entry.text = text

    remap = section("remap")
    put(remap, "importer", importer.name)
    put(remap, "type", importer.resource_type)
    put(remap, "uid", stable_uid(res_path), replace=False)
    put(remap, "path", imported, replace=False)
    deps = section("deps")
    put(deps, "source_file", res_path)
    put(deps, "dest_files", [imported], replace=False)
    par = section("params")
    for key, value in params.items():
        put(par, key, value)
    return render_layout(sections)


# ------------------------------------------------------------------------ the project
def find_project(config: ProjectConfig) -> Path | None:
    """The Godot project the assets belong to: ``[engine] godot``, else the nearest folder at
    or above the assets folder holding ``project.godot``."""
    if config.godot_project is not None:
        return config.godot_project if (config.godot_project / PROJECT_FILE).is_file() else None
    folder = config.assets_dir
    while True:
        if (folder / PROJECT_FILE).is_file():
            return folder
        if folder.parent == folder:
            return None
        folder = folder.parent


def res_path(project: Path, path: Path) -> str | None:
    """``path`` as ``res://...`` inside ``project``; ``None`` if outside it."""
    try:
        rel = path.relative_to(project)
    except ValueError:
        return None
    return "res://" + rel.as_posix()


def _listed(index: dict[str, Any] | None) -> set[str]:
    if not index:
        return set()
    return {
        f["path"]
        for entry in index.get("tracks", {}).values()
        for f in entry.get("files", {}).values()
        if isinstance(f.get("path"), str)
    }


def sync(
    config: ProjectConfig, index: dict[str, Any], previous_index: dict[str, Any] | None, result: SyncResult
) -> None:
    """Write or update the sidecar of every listed OGG/MP3 inside the Godot project; remove
    the sidecars of files no longer listed (once the file itself is gone)."""
    project = find_project(config)
    if project is None:
        return
    for name, entry in sorted(index.get("tracks", {}).items()):
        params = params_for(entry)
        for fmt, info in sorted(entry.get("files", {}).items()):
            importer = IMPORTERS.get(fmt)
            if importer is None or not isinstance(info.get("path"), str):
                continue
            path = config.root / info["path"]
            res = res_path(project, path)
            if res is None:
                continue
            sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
            try:
                try:
                    existing = sidecar.read_text("utf-8")
                except FileNotFoundError:
                    existing = None
                text = (
                    new_sidecar(res, importer, params)
                    if existing is None
                    else merge_sidecar(existing, res, importer, params)
                )
                if text != existing:
                    atomic_write_bytes(sidecar, text.encode("utf-8"), config.staging_dir)
                    result.written.append(sidecar)
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("could not write the Godot import settings %s of track %s: %s", sidecar, name, exc)
    listed = _listed(index)
    for rel in sorted(_listed(previous_index) - listed):
        path = config.root / rel
        if path.suffix.lstrip(".") not in IMPORTERS or res_path(project, path) is None:
            continue
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if path.exists() or not sidecar.is_file() or sidecar.is_symlink():
            continue  # the file stayed (not trackspec's to delete), or no sidecar
        try:
            sidecar.unlink()
        except OSError as exc:
            log.warning("could not remove %s: %s", sidecar, exc)
            continue
        result.removed.append(sidecar)
        folder = sidecar.parent
        if folder != config.assets_dir and config.assets_dir in folder.parents:
            try:
                folder.rmdir()  # the genre folder the build emptied but for the sidecar
            except OSError:
                pass
