"""Put verified files into the assets folder, and take owned files out of it.

Every published file is copied from a verified cache entry to a temp name in the
staging folder (the repo's state dir), its sha256 checked against the entry's manifest, then renamed into place. The
engine therefore sees the old file or the new one, never a partial one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import CacheEntry
from .errors import CacheCorrupt
from .fsutil import (
    UnsafePath,
    fsync_dir,
    make_dirs,
    make_dirs_inside,
    owned_path,
    replace_into,
    sha256_file,
    temp_path_for,
)
from .grammar import PUBLISHED_FORMATS

if TYPE_CHECKING:
    from .tags import TrackTags

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def copy_verified(
    source: Path,
    target: Path,
    expected_sha256: str,
    staging: Path | None = None,
    adjust: Callable[[Path], None] | None = None,
    owner: Path | None = None,
) -> tuple[int, str]:
    """Copy ``source`` to ``target`` atomically, checking the copy's sha256; return the
    published file's size and sha256.

    ``adjust`` may rewrite the verified copy before it is renamed into place (its tags):
    the returned facts are then those of the adjusted file. With ``owner`` (the assets
    folder), a target whose folder leads out of it through a link is refused
    (``UnsafePath``), by the same check that deleting uses (``fsutil.owned_path``).
    """
    if owner is not None:
        make_dirs_inside(target.parent, owner)
        target = owned_path(target, owner)
    target.parent.mkdir(parents=True, exist_ok=True)
    if staging is not None:
        make_dirs(staging)
    tmp = temp_path_for(target, staging)
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        if digest.hexdigest() != expected_sha256:
            raise CacheCorrupt(f"{source}: content changed while publishing (sha256 mismatch)")
        published = expected_sha256
        if adjust is not None:
            adjust(tmp)
            published, size = sha256_file(tmp), tmp.stat().st_size
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        replace_into(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return size, published


def publish_entry(
    entry: CacheEntry,
    targets: dict[str, Path],
    staging: Path | None = None,
    tags: TrackTags | None = None,
    owner: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """Publish ``audio.<fmt>`` of a render entry to each ``targets[fmt]``; return file facts.

    A render is shared by every track whose audio and settings are the same, but its files
    name the track they were made for: ``tags`` (when they name another track) are written
    into the published copies, which then differ from the cache's in their tags alone.
    """
    adjust = None
    if tags is not None and entry.info.get("title") != tags.title:
        from .tags import TAGGABLE_FORMATS, write_tags

        def adjust_for(fmt: str) -> Callable[[Path], None] | None:
            return (lambda path: write_tags(path, fmt, tags)) if fmt in TAGGABLE_FORMATS else None

        adjust = adjust_for
    published = {}
    for fmt, target in targets.items():
        name = f"audio.{fmt}"
        size, digest = copy_verified(
            entry.files[name], target, entry.digests[name], staging, adjust(fmt) if adjust else None, owner
        )
        published[fmt] = {"sha256": digest, "bytes": size, "target": target}
    return published


def remove_owned(
    files: list[tuple[Path, str]], root: Path, assets_dir: Path, digest_of: Callable[[Path], str | None]
) -> list[Path]:
    """Delete files the index owned: ``(path, sha256 the index recorded)`` pairs.

    Never outside the repo. Inside the assets folder an owned path is removed whatever it
    holds (a symlink put there is removed itself, not what it points to). Elsewhere in the
    repo (the assets folder was moved in trackspec.toml) only a file still byte-identical
    to what was published is removed: anything else is somebody's work.
    """
    removed = []
    root, assets = root.resolve(), assets_dir.resolve()
    for path, sha256 in files:
        try:
            target = owned_path(path, root)  # the check writing uses too
        except UnsafePath:
            log.warning("not deleting %s: it is outside the game repo %s", path, root)
            continue
        parent = target.parent
        if target.suffix[1:] not in PUBLISHED_FORMATS:  # trackspec publishes <name>.<format> only
            log.warning("not deleting %s: not an audio file trackspec publishes", path)
            continue
        in_assets = parent == assets or assets in parent.parents
        if not target.is_symlink() and not in_assets and digest_of(target) != sha256:
            if target.exists():
                log.warning("not deleting %s: changed since trackspec wrote it", path)
            continue
        try:
            target.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
        if in_assets and parent != assets:
            try:
                parent.rmdir()  # an emptied genre folder goes too
            except OSError:
                pass
    return removed
