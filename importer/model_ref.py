"""What a spec's ``model`` string refers to, and the identity that enters the keys.

A hub id (``facebook/musicgen-medium``) is identified by id and revision. A local
directory is identified by a digest of its files, not its path, so the same weights at
another path or on another machine give the same keys. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .fsutil import UnsafePath, read_regular
from .layout import looks_like_path
from .state import State

_SKIP_DIRS = {".git", ".cache", "__pycache__"}
#: Bounds of a local model folder: MusicGen large is 9 files and 13 GB.
MAX_MODEL_FILES = 10_000
MAX_MODEL_BYTES = 256 << 30


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: ``source`` is what ``from_pretrained`` receives."""

    source: str
    revision: str | None
    identity: dict[str, str]
    is_local: bool


def resolve_model(model: str, revision: str, base: Path, state: State) -> ModelRef:
    """Resolve ``model`` against ``base`` (the repo root or the working directory).

    An existing directory is local (as transformers decides); a path-like string that
    does not exist is an error; anything else is a hub id.
    """
    candidate = Path(model).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    if candidate.is_dir():
        directory = candidate.resolve()
        return ModelRef(str(directory), None, {"local_sha256": directory_digest(directory, state)}, True)
    if looks_like_path(model):
        raise FileNotFoundError(f"model directory {candidate} does not exist")
    return ModelRef(model, revision, {"hub": model, "revision": revision}, False)


def model_files(directory: Path, walked: list[Path] | None = None) -> list[tuple[str, Path]]:
    """(relative path, path) of every file that makes up a local model, sorted.

    ``walked``, if given, receives every folder listed (or that could not be listed).
    """

    def unlisted(exc: OSError) -> None:
        if walked is not None and exc.filename:
            walked.append(Path(exc.filename))

    entries: list[tuple[str, Path]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(directory, onerror=unlisted):
        if walked is not None:
            walked.append(Path(dirpath))
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError:  # a dangling link: the digest reports it when hashing
                st = None
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise UnsafePath(
                    f"model directory {directory}: {path.relative_to(directory)} is not a regular "
                    "file (a device, FIFO, socket or a link to one); remove it"
                )
            total += st.st_size if st is not None else 0
            entries.append((path.relative_to(directory).as_posix(), path))
            if len(entries) > MAX_MODEL_FILES or total > MAX_MODEL_BYTES:
                raise UnsafePath(
                    f"model directory {directory}: more than {MAX_MODEL_FILES} files or "
                    f"{MAX_MODEL_BYTES >> 30} GiB; point the model at the folder of one model"
                )
    return sorted(entries)


def directory_digest(directory: Path, state: State) -> str:
    """sha256 over (relative path, file sha256) of every file, in sorted order."""
    outer = hashlib.sha256()
    for rel, path in model_files(directory):
        outer.update(f"{rel}\0{state.digest(path)}\n".encode())
    return outer.hexdigest()


def model_label(model: ModelRef) -> str:
    """How files name their model: the hub id and revision, or a local model's content
    digest (not its path, which differs between machines sharing one cache)."""
    if model.is_local:
        return f"local:sha256:{model.identity['local_sha256'][:16]}"
    return f"{model.source}@{model.revision}" if model.revision else model.source


def model_type(model: ModelRef) -> str | None:
    """The ``model_type`` in a model's config.json, read without loading anything: from a
    local folder, or from the Hugging Face cache for a hub id; ``None`` when it is not at hand
    (the backend then says so when it loads)."""
    import json

    if model.is_local:
        config_file: Path | None = Path(model.source) / "config.json"
    else:
        config_file = _hub_cached_config(model.source, model.revision or "main")
    if config_file is None:
        return None
    try:
        value = json.loads(read_regular(config_file, 1 << 20)).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _hub_cached_config(repo_id: str, revision: str) -> Path | None:
    """``config.json`` of a hub model in the Hugging Face cache (huggingface_hub's layout), if there."""
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if not hub:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
        )
        hub = os.path.join(home, "hub")
    folder = Path(hub) / ("models--" + repo_id.replace("/", "--"))
    commit = revision
    try:
        ref = read_regular(folder / "refs" / revision, 4096).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        ref = ""
    if ref:
        commit = ref
    if "/" in commit or commit in ("", ".", ".."):
        return None
    return folder / "snapshots" / commit / "config.json"
