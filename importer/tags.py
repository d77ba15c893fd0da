"""Loop points and provenance tags written into encoded files, in place, with mutagen.

Called on the encoder's temp files before they are verified and renamed into place, so a
tagged file is proven whole like any other.

Ogg Vorbis (and FLAC): every comment is replaced, in this order::

    LOOPSTART, LOOPLENGTH, SEED, TRACKSPEC_VERSION, TITLE, MUSICGEN_MODEL,
    TRACKSPEC_RENDER_KEY, LICENSE

RPG Maker MV/MZ finds loop points by scanning only the first lacing segment (at most 255
bytes) of the comment packet for ``LOOP``, and reads each ``KEY=VALUE`` up to the next zero
byte, which runs into the next comment's little-endian length. So the loop comments come
first (with ffmpeg's ``encoder=Lavc libvorbis`` comment dropped), and the comment after
them must not have a length whose low byte is an ASCII digit (48..57), or the reader would
take it for another digit of LOOPLENGTH; SEED (at most 26 bytes) comes next for that
reason. ``write_tags`` re-reads the file with an emulation of that reader and fails if it
would not see exactly the loop points written.

MP3: an ID3v2.4 tag (TIT2 and TXXX frames) in front of the LAME/Xing frame; decoders skip
the tag and keep the gapless info, so the decoded length does not change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from importer.errors import EncodeError

TAGGABLE_FORMATS = ("ogg", "mp3", "flac")
#: How much of an Ogg file ``rpgmaker_loop_points`` reads: the headers live well within it.
_OGG_HEADER_BYTES = 1 << 20
_ASCII_DIGITS = range(0x30, 0x3A)


@dataclass(frozen=True)
class TrackTags:
    """What a published file says about itself. Loop points are samples at the file's rate;
    both or neither are set."""

    title: str
    render_key: str
    model: str
    seed: int | None
    version: str
    loop_start: int | None = None
    loop_length: int | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        if (self.loop_start is None) != (self.loop_length is None):
            raise ValueError("loop_start and loop_length must both be set or both be None")
        if self.loop_start is not None and self.loop_length is not None:
            if self.loop_start < 0 or self.loop_length <= 0:
                raise ValueError(f"bad loop points: start {self.loop_start}, length {self.loop_length}")

    def fields(self) -> list[tuple[str, str]]:
        """(KEY, value) pairs in the order they are written (see the module docstring)."""
        pairs: list[tuple[str, str]] = []
        if self.loop_start is not None:
            pairs += [("LOOPSTART", str(self.loop_start)), ("LOOPLENGTH", str(self.loop_length))]
        if self.seed is not None:
            pairs.append(("SEED", str(self.seed)))
        pairs += [
            ("TRACKSPEC_VERSION", self.version),
            ("TITLE", self.title),
            ("MUSICGEN_MODEL", self.model),
            ("TRACKSPEC_RENDER_KEY", self.render_key),
        ]
        if self.license is not None:
            pairs.append(("LICENSE", self.license))
        return pairs


def write_tags(path: Path, fmt: str, tags: TrackTags) -> None:
    """Replace every tag of the ``fmt`` file at ``path`` with ``tags``, in place.

    ``fmt`` names the container because temp files have no extension. Raises
    ``EncodeError`` when the file cannot be tagged or the loop points would not be read
    back where engines look for them.
    """
    if fmt not in TAGGABLE_FORMATS:
        raise ValueError(f"cannot tag {fmt!r} files; taggable formats: {TAGGABLE_FORMATS}")
    from mutagen import MutagenError

    try:
        if fmt == "mp3":
            _write_id3(path, tags)
        else:
            _write_vorbis_comments(path, fmt, tags)
    except MutagenError as exc:
        raise EncodeError(f"{path}: cannot write tags: {exc}") from exc
    if fmt == "ogg" and tags.loop_start is not None:
        found = rpgmaker_loop_points(path)
        if found != (tags.loop_start, tags.loop_length):
            raise EncodeError(
                f"{path}: LOOPSTART/LOOPLENGTH read back as {found} by an RPG Maker style reader, "
                f"expected {(tags.loop_start, tags.loop_length)}"
            )


def read_tags(path: Path, fmt: str) -> dict[str, str]:
    """The tags of ``path`` as ``{KEY: value}`` in file order (first value of each key);
    MP3's TIT2 reads as ``TITLE`` and each TXXX frame by its description."""
    if fmt == "mp3":
        from mutagen.id3 import ID3, ID3NoHeaderError

        try:
            id3 = ID3(path)
        except ID3NoHeaderError:
            return {}
        out: dict[str, str] = {}
        for frame in id3.values():
            if frame.FrameID == "TIT2":
                out.setdefault("TITLE", str(frame.text[0]))
            elif frame.FrameID == "TXXX":
                out.setdefault(frame.desc, str(frame.text[0]))
        return out
    comments = _open_vorbis(path, fmt).tags or []
    found: dict[str, str] = {}
    for key, value in comments:
        found.setdefault(key.upper(), value)
    return found


def _open_vorbis(path: Path, fmt: str) -> Any:
    """The mutagen file object (its ``tags`` a VComment list) of an Ogg Vorbis or FLAC file."""
    if fmt == "ogg":
        from mutagen.oggvorbis import OggVorbis

        return OggVorbis(path)
    if fmt == "flac":
        from mutagen.flac import FLAC

        return FLAC(path)
    raise ValueError(f"{fmt!r} has no Vorbis comments")


def _write_vorbis_comments(path: Path, fmt: str, tags: TrackTags) -> None:
    """Clear the comments (ffmpeg's ENCODER included) and write ``tags.fields()`` in order:
    mutagen keeps a VComment's list order and key case when it saves."""
    audio = _open_vorbis(path, fmt)
    if audio.tags is None:
        audio.add_tags()
    pairs = tags.fields()
    if tags.loop_start is not None and len(pairs) > 2:
        pairs = pairs[:2] + _safe_after_loop(pairs[2:])
    audio.tags.clear()
    audio.tags.extend(pairs)
    audio.save(padding=_no_padding)


def _safe_after_loop(rest: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Put first a comment whose length's low byte is not an ASCII digit (see module doc)."""
    for i, (key, value) in enumerate(rest):
        if len(f"{key}={value}".encode()) & 0xFF not in _ASCII_DIGITS:
            return [rest[i], *rest[:i], *rest[i + 1 :]]
    raise EncodeError("no tag can safely follow LOOPLENGTH; shorten the title or the model name")


def _no_padding(info: object) -> int:
    """No room left for later in-place edits (there are none): the bytes then depend only
    on the audio and the tags, not on what the file held before, so builds stay bitexact."""
    return 0


def _write_id3(path: Path, tags: TrackTags) -> None:
    from mutagen.id3 import ID3, TIT2, TXXX, ID3NoHeaderError

    try:
        id3 = ID3(path)
    except ID3NoHeaderError:
        id3 = ID3()
    id3.clear()
    for key, value in tags.fields():
        if key == "TITLE":
            id3.add(TIT2(encoding=3, text=[value]))
        else:
            id3.add(TXXX(encoding=3, desc=key, text=[value]))
    # v1=0: no ID3v1 tag at the end; it could hold none of these and is one more thing
    # to strip for a gapless decoder.
    id3.save(path, v2_version=4, v1=0, padding=_no_padding)


def rpgmaker_loop_points(path: Path) -> tuple[int | None, int | None]:
    """(LOOPSTART, LOOPLENGTH) as RPG Maker MV/MZ's ``WebAudio._readOgg`` sees them.

    A port of its reader: walk the Ogg pages while they hold Vorbis headers; in a
    segment that starts a comment packet (``\\x03vorbis``), scan the segment's bytes for
    ``LOOP`` and take the text up to the next zero byte.
    """
    with open(path, "rb") as fh:
        data = fh.read(_OGG_HEADER_BYTES)
    start: int | None = None
    length: int | None = None
    index = 0
    while data[index : index + 4] == b"OggS" and index + 27 <= len(data):
        index += 26
        count = data[index]
        index += 1
        segments = data[index : index + count]
        index += count
        header_found = False
        for size in segments:
            if data[index + 1 : index + 5] == b"vorb":
                if data[index] == 3:
                    start, length = _scan_loop_comments(data, index, size, start, length)
                header_found = True
            index += size
        if not header_found:
            break
    return start, length


def _scan_loop_comments(
    data: bytes, index: int, size: int, start: int | None, length: int | None
) -> tuple[int | None, int | None]:
    i = index
    while i < index + size - 10:
        if data[i : i + 4] == b"LOOP":
            end = data.find(b"\0", i)
            text = data[i : end if end >= 0 else len(data)].decode("latin-1")
            i += len(text)
            if m := re.search(r"LOOPSTART=([0-9]+)", text):
                start = int(m.group(1))
            if m := re.search(r"LOOPLENGTH=([0-9]+)", text):
                length = int(m.group(1))
        i += 1
    return start, length
