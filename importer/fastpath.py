"""The no-op fast path: "every track is fresh", decided by stat calls alone.

A full no-op build parses every spec, loads the index, digests keys and stats every
output: ~0.4 s for 1000 specs, most of a pre-build hook's budget. Like ninja's
``.ninja_log`` and dvc-data's state, a build whose plan found every track fresh writes
a record (``.trackspec/noop.marshal``) of everything that plan depended on:

* the stat signature (size, mtime_ns, ctime_ns, inode) of ``trackspec.toml``, of every
  spec, of every folder listed to find the specs (adding, deleting or renaming a spec
  changes its folder), of a local model's files and folders, of the index and of every
  published output;
* where each configured path and local model resolves to (a retargeted symlink), and
  which paths must not be folders (a hub model id, a spec folder that does not exist);
* what is not a file: ``--model``/``TRACKSPEC_MODEL`` and the path it names, the
  environment variables the config reads, trackspec's version and its own modules.

When all of it matches, ``build`` and ``build --check`` print what the full no-op would,
without parsing a spec, loading the planner or taking more than a moment's lock.
Anything else (or any doubt: an unreadable record, an error) takes the full path, whose
next all-fresh build writes the record again. ``--check`` only ever reads it. What a full
no-op does besides deciding (sweeping temp files a killed build left, refreshing the stat
cache) waits for the next full build.

Racy files (git's rule): a file written within the timestamp granularity of the moment
it was read can change again and keep its signature. So a record is written only if
everything in it last changed (mtime and ctime) more than ``RACY_NS`` before the build
began; otherwise the next build takes the full path and records then. ctime cannot be
set from user space, so an edit after the record always shows.

Checking needs only ``os`` and ``marshal``: this module runs before ``logging``,
``dataclasses`` or ``tomllib`` would be imported. Writing imports the planner lazily. The
record is in ``marshal`` format (Python's own for bytecode, built in): for 1000 specs a
fresh process loads it in ~1.8 ms, against ~5 ms for the same data as JSON (json's
import included). It is per-machine state, written atomically under ``.trackspec/``
(ignored by git), like ``state.json``; anything unreadable means "no record".
"""

from __future__ import annotations

import marshal
import os
import stat

from .layout import CACHE_ENV, NOOP_RECORD, STATE_DIR_NAME

TYPE_CHECKING = False  # not typing's: importing typing costs ~5 ms of a no-op build
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from .config import ProjectConfig
    from .plan import Plan

RECORD_VERSION = 1
#: Files changed this close to the start of a build are not recorded (git's racy entries).
RACY_NS = 1_000_000_000
#: Environment variables that change what a full build would plan or say.
ENV_INPUTS = (CACHE_ENV, "TRACKSPEC_ENCODE_WORKERS", "XDG_CACHE_HOME", "HOME")

Signature = list  # [path, size, mtime_ns, ctime_ns, inode]


def record_path(root: str) -> str:
    return os.path.join(root, STATE_DIR_NAME, NOOP_RECORD)


def model_candidate(model: str, base: str) -> str:
    """The path ``resolve_model`` tries for ``model``: ``~`` expanded, relative to ``base``."""
    path = os.path.expanduser(model)
    return path if os.path.isabs(path) else os.path.join(base, path)


def current_inputs(model_override: str | None, cwd: str) -> dict[str, Any]:
    """What decides a plan besides the recorded files; compared whole with the record's."""
    from . import __version__

    return {
        "trackspec": __version__,
        "model_override": model_override,
        "model_override_path": model_candidate(model_override, cwd) if model_override else None,
        "env": {name: os.environ.get(name) for name in ENV_INPUTS},
        "code": _code_signature(),
    }


def _code_signature() -> list[list]:
    """(name, size, mtime_ns) of trackspec's own modules: an edited planner re-plans."""
    package = os.path.dirname(os.path.abspath(__file__))
    names = sorted(n for n in os.listdir(package) if n.endswith(".py"))
    names.append(os.path.join("generate", "base.py"))
    signature = []
    for name in names:
        st = os.stat(os.path.join(package, name))
        signature.append([name, st.st_size, st.st_mtime_ns])
    return signature


# ------------------------------------------------------------------------ checking
class NoopRecord:
    """A record that matched: the tracks, in the order a full build reports them."""

    def __init__(self, data: dict[str, Any]):
        self.data = data

    @property
    def tracks(self) -> list[tuple[str, str]]:
        """(name, spec path relative to the root) of every track."""
        return [(entry[1], entry[0]) for entry in self.data["specs"]]

    @property
    def index_path(self) -> str:
        return self.data["index"]

    def summary(self) -> str:
        return (
            f"{len(self.data['specs'])} specs, {len(self.data['files'])} other files and folders "
            "unchanged since the last no-op build"
        )


def check(root: str, model_override: str | None, cwd: str) -> tuple[NoopRecord | None, str]:
    """``(record, "")`` if the recorded no-op still holds by stat alone, else ``(None, why not)``.

    Cheapest tests first; the first difference ends the check.
    """
    try:
        fd = os.open(record_path(root), os.O_RDONLY | os.O_NONBLOCK)  # a FIFO planted there never blocks
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 64 << 20:
                raise ValueError("not a regular file of a sensible size")
            data = marshal.loads(fh.read())
    except FileNotFoundError:
        return None, "no record of a no-op build yet"
    except (OSError, ValueError, EOFError, TypeError) as exc:
        return None, f"the record cannot be read ({exc})"
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or data.get("root") != root:
        return None, "the record is from another version of trackspec or another root"
    recorded = data["inputs"]
    now = current_inputs(model_override, cwd)
    if recorded != now:
        changed = sorted(k for k in now if recorded.get(k) != now[k])
        return None, f"changed since the record: {', '.join(changed)}"
    for given, resolved in data["resolved"]:
        if os.path.realpath(given) != resolved:
            return None, f"{given} no longer resolves to {resolved}"
    for path in data["not_dirs"]:
        if os.path.isdir(path):
            return None, f"{path} is a folder now"
    for path in data["absent"]:
        try:
            os.stat(path)
        except FileNotFoundError:
            continue
        except OSError:
            pass
        return None, f"{path} exists now"
    os_stat = os.stat
    for path, size, mtime, ctime, ino in data["files"]:
        try:
            st = os_stat(path)
        except OSError:
            return None, f"{path} is gone"
        if st.st_mtime_ns != mtime or st.st_ctime_ns != ctime or st.st_size != size or st.st_ino != ino:
            return None, f"{path} changed"
    join = os.path.join
    for spec, _name, size, mtime, ctime, ino in data["specs"]:
        try:
            st = os_stat(join(root, spec))
        except OSError:
            return None, f"{spec} is gone"
        if st.st_mtime_ns != mtime or st.st_ctime_ns != ctime or st.st_size != size or st.st_ino != ino:
            return None, f"{spec} changed"
    return NoopRecord(data), ""


# ------------------------------------------------------------------------ recording
class NotRecordable(Exception):
    """Something the plan read changed too recently (or went away) to be trusted later."""


def write_record(
    config: ProjectConfig, plan: Plan, started_ns: int, model_override: str | None, override_base: Path | None
) -> str | None:
    """Record the inputs of ``plan``, which found every track fresh; return why not, if not.

    Call under the repo lock, after the build, only when every track was fresh and no spec
    failed. A record not written leaves the old one, which can no longer match: whatever
    made this build's files too recent also changed their signatures.
    """
    from .fsutil import atomic_write_bytes

    try:
        data = _record_data(config, plan, started_ns, model_override, override_base)
    except NotRecordable as exc:
        return str(exc)
    try:
        atomic_write_bytes(config.state_dir / NOOP_RECORD, marshal.dumps(data))
    except OSError as exc:  # e.g. something not a file in its place: no record, a full build next time
        return str(exc)
    return None


def _record_data(
    config: ProjectConfig, plan: Plan, started_ns: int, model_override: str | None, override_base: Path | None
) -> dict[str, Any]:
    from pathlib import Path

    from .config import rel
    from .model_ref import model_files
    from .tracks import input_files, spec_paths

    limit = started_ns - RACY_NS

    def signature(path: str) -> Signature:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise NotRecordable(f"{path} cannot be read ({exc.strerror})") from None
        if max(st.st_mtime_ns, st.st_ctime_ns) >= limit:
            raise NotRecordable(f"{path} changed within {RACY_NS / 1e9:g} s of the build's start")
        return [path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    root = str(config.root)
    cwd = str(override_base) if override_base else os.getcwd()
    inputs = current_inputs(model_override, cwd)
    if any(mtime >= limit for _name, _size, mtime in inputs["code"]):
        raise NotRecordable("trackspec's own code changed during the build")
    files: list[Signature] = [signature(str(config.config_path))]
    resolved: list[list[str]] = [list(pair) for pair in config.resolved_from]
    not_dirs = [str(top) for top in config.spec_dirs if not top.is_dir()]
    absent: list[str] = []

    # The specs, and every folder listed to find them.
    walked: list[Path] = []
    if set(spec_paths(config, walked)) != {tp.track.spec.path for tp in plan.tracks}:
        raise NotRecordable("the spec files changed during the build")
    files += [signature(str(folder)) for folder in dict.fromkeys(walked)]
    specs = []
    for tp in plan.tracks:
        _path, *sig = signature(str(tp.track.spec.path))
        specs.append([rel(config, tp.track.spec.path), tp.name, *sig])

    # The audio files tracks continue or follow (their content is in the keys).
    for tp in plan.tracks:
        files += [signature(str(path)) for path in input_files(config, tp.track.spec)]

    # The models, as resolve_model found them: a hub id where no folder is, or a folder's files.
    override = model_override
    base = cwd if override and override_base else root
    models: dict[str, Any] = {}
    for tp in plan.tracks:
        models.setdefault(model_candidate(override or tp.track.spec.model, base), tp.track.model)
    for candidate, model in models.items():
        if not model.is_local:
            not_dirs.append(candidate)
            continue
        resolved.append([candidate, model.source])
        model_walked: list[Path] = []
        paths = [str(path) for _rel, path in model_files(Path(model.source), model_walked)]
        files += [signature(str(folder)) for folder in dict.fromkeys(model_walked)]
        files += [signature(path) for path in paths]

    # The index and every published file.
    if config.index_path.exists():
        files.append(signature(str(config.index_path)))
    else:
        absent.append(str(config.index_path))
    for tp in plan.tracks:
        for info in plan.index["tracks"][tp.name]["files"].values():
            files.append(signature(os.path.join(root, info["path"])))

    return {
        "version": RECORD_VERSION,
        "root": root,
        "index": str(config.index_path),
        "started_ns": started_ns,
        "inputs": inputs,
        "resolved": resolved,
        "not_dirs": not_dirs,
        "absent": absent,
        "files": files,
        "specs": specs,
    }
