"""Small filesystem helpers: atomic writes, temp names, hashing.

Every file the product writes goes through a temp name beside its target and
``os.replace``, so a crash leaves either the old file or the new one, never half of one.
Temp names carry one marker (``TEMP_MARKER``) so a later run can sweep what a killed
process left behind.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

TEMP_MARKER = ".trackspec-tmp"
_CHUNK = 1 << 20


def temp_path_for(target: Path) -> Path:
    """A unique hidden temp name in the target's directory (same filesystem)."""
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_MARKER}")


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


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically: temp file, fsync, rename, fsync dir."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
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
