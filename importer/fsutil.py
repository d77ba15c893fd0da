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
import secrets
import shutil
import stat
from pathlib import Path

from .errors import TrackspecError
from .layout import STATE_DIR_NAME

TEMP_MARKER = ".trackspec-tmp"
_CHUNK = 1 << 20
#: What ``.trackspec/.gitignore`` holds: the per-machine state never enters the game's repository.
STATE_IGNORE = b"# trackspec's per-machine state, lock and requests: never committed\n*\n"
#: Largest file ``read_regular`` reads unless told otherwise (specs, records, requests, the index).
MAX_READ_BYTES = 64 << 20


class UnsafePath(TrackspecError, OSError):
    """A path trackspec would write, replace, delete or read leads outside what it owns, or
    is not a regular file: a clear error for the track or file concerned. Also an ``OSError``,
    so callers that survive a failed write or read survive this."""


def ensure_state_dir(state_dir: Path) -> Path:
    """Create the repo's state folder (``.trackspec/``) if needed, ignoring itself in git
    from the start: a cloned repo never carries another machine's state, and one that
    does is not committed back. Every place that creates the state folder calls this."""
    owned_path(state_dir / ".gitignore", state_dir.parent)  # a state folder linked out of the repo: refused
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not os.path.lexists(ignore):
        tmp = temp_path_for(ignore)
        try:
            with open(tmp, "wb") as fh:
                fh.write(STATE_IGNORE)
            os.replace(tmp, ignore)
        finally:
            tmp.unlink(missing_ok=True)
    return state_dir


def make_dirs(folder: Path) -> None:
    """``mkdir -p folder``; a state folder on the way is made by ``ensure_state_dir``."""
    for part in (folder, *folder.parents):
        if part.name == STATE_DIR_NAME:
            ensure_state_dir(part)
            make_dirs_inside(folder, part)  # .trackspec/tmp and the rest: never through a link out
            return
    folder.mkdir(parents=True, exist_ok=True)


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)


def owned_path(path: Path, owner: Path) -> Path:
    """``path`` with its folder resolved, if that folder lies inside ``owner`` (resolved);
    else ``UnsafePath``. The one check for every write, replace and delete: a symlinked
    folder on the way that leads out of ``owner`` is refused; a link at ``path`` itself
    is replaced or removed as a link (``os.replace``/``unlink`` never follow it)."""
    top = os.path.realpath(owner)
    parent = os.path.realpath(path.parent)
    if not _inside(parent, top):
        raise UnsafePath(
            f"{path}: refusing to write or delete there: {path.parent} leads to {parent}, "
            f"outside {owner}; remove the link"
        )
    return Path(parent) / path.name


def make_dirs_inside(folder: Path, owner: Path) -> Path:
    """``mkdir -p folder`` where every existing folder on the way stays inside ``owner``
    (checked before anything is created through a link that leads elsewhere)."""
    top = os.path.realpath(owner)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    not_yet_made = _inside(os.path.abspath(owner), os.path.abspath(existing))  # owner itself is missing
    if not not_yet_made and not _inside(os.path.realpath(existing), top):
        raise UnsafePath(
            f"{folder}: refusing to write there: {existing} leads to {os.path.realpath(existing)}, "
            f"outside {owner}; remove the link"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_regular(path: Path, max_bytes: int | None = MAX_READ_BYTES, inside: Path | None = None) -> int:
    """A read-only descriptor of ``path`` if it is a regular file (no FIFO, device, socket
    or directory: opened with ``O_NONBLOCK`` and checked with ``fstat``, so nothing blocks),
    at most ``max_bytes`` long and, with ``inside``, resolving inside that folder.
    Raises ``FileNotFoundError`` when absent, ``UnsafePath`` for anything else."""
    if inside is not None and not _inside(os.path.realpath(path), os.path.realpath(inside)):
        raise UnsafePath(f"{path}: links to {os.path.realpath(path)}, outside {inside}")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{path}: not a regular file ({_kind(st.st_mode)})")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnsafePath(f"{path}: {st.st_size} bytes, more than the {max_bytes} allowed")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, max_bytes: int | None = MAX_READ_BYTES, inside: Path | None = None) -> bytes:
    """The bytes of a regular file (``open_regular``'s checks), never more than ``max_bytes``."""
    fd = open_regular(path, max_bytes, inside)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise UnsafePath(f"{path}: more than the {max_bytes} bytes allowed")
    return data


def _kind(mode: int) -> str:
    for test, label in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return label
    return "a special file"


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
    make_dirs(target.parent)
    if staging is not None:
        make_dirs(staging)
    if os.path.isdir(target) and not os.path.islink(target):
        raise UnsafePath(f"{target}: a directory is in the way of a file trackspec writes; remove it")
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


def file_signature(path: Path) -> tuple[int, int, int] | None:
    """``(size, mtime_ns, inode)`` of ``path`` (``None`` if absent): whether a file a
    long-running process keeps in memory changed on disk. Files trackspec rewrites are
    replaced by a rename, so another writer shows as a new inode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def sha256_file(path: Path) -> str:
    """Hex sha256 of a regular file's bytes, read in 1 MiB chunks (``UnsafePath``, an
    ``OSError``, for a FIFO, device or directory: hashing ``/dev/zero`` never ends)."""
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path, max_bytes=None), "rb") as fh:
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
    if directory.is_symlink() or not directory.is_dir():  # never through a link out of the folder
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
