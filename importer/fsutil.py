"""Small filesystem helpers: atomic writes, temp names, hashing.

Every file the product writes goes through a temp name and ``os.replace``, so a crash
leaves either the old file or the new one, never half of one. Files the engine reads (the
assets and the index) are staged in a folder of the repo's state dir instead of beside
their target, so even a SIGKILL leaves nothing half-written in the assets folder. Temp
names carry one marker (``TEMP_MARKER``) so a later run can sweep what a killed process
left behind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import secrets
from pathlib import Path

TEMP_MARKER = ".trackspec-tmp"
_CHUNK = 1 << 20


def temp_path_for(target: Path, staging: Path | None = None) -> Path:
    """A unique hidden temp name for ``target``: in ``staging`` if given, else beside it."""
    folder = staging if staging is not None else target.parent
    return folder / f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_MARKER}"


def replace_into(tmp: Path, target: Path) -> None:
    """``os.replace(tmp, target)``; across filesystems, via a temp name beside the target."""
    try:
        os.replace(tmp, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    beside = temp_path_for(target)
    try:
        shutil.copyfile(tmp, beside)
        with open(beside, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(beside, target)
    except BaseException:
        beside.unlink(missing_ok=True)
        raise
    tmp.unlink(missing_ok=True)


def is_temp_name(name: str) -> bool:
    return name.endswith(TEMP_MARKER)


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(target: Path, data: bytes, staging: Path | None = None) -> None:
    """Write ``data`` to ``target`` atomically: temp file, fsync, rename, fsync dir."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if staging is not None:
        staging.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target, staging)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        replace_into(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sweep_temp_files(directory: Path, recursive: bool = True) -> list[Path]:
    """Remove temp files a killed process left in ``directory``; return them.

    Call only under the repository lock: another live build's temps look the same.
    """
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    walk = os.walk(directory) if recursive else [(str(directory), [], os.listdir(directory))]
    for root, _dirs, files in walk:
        for name in files:
            if is_temp_name(name):
                path = Path(root) / name
                try:
                    path.unlink()
                    removed.append(path)
                except (FileNotFoundError, IsADirectoryError):
                    pass
    return removed


def make_state_dir(state_dir: Path) -> None:
    """Create the state folder (``.trackspec/``) if missing, ignoring itself in git from the
    start: per-machine state, locks and staging must never be committed (or cloned in)."""
    if state_dir.is_dir():
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_bytes(state_dir / ".gitignore", b"# trackspec's per-machine state: never commit it\n*\n")
    except OSError:
        pass  # an ignore file is a courtesy; the state itself still works
