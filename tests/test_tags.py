"""Loop and provenance tags on files from the real encoder: values, the raw position of the
Ogg loop comments, and decoded audio unchanged by tagging."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from mutagen.id3 import ID3
from mutagen.oggvorbis import OggVorbis

from importer.encode import EncodeSettings, decode_pcm, decode_sample_count, encode
from importer.tags import TrackTags, read_tags, rpgmaker_loop_points, write_tags

RATE = 44_100
N = RATE * 2 + 1234  # not a whole number of MP3 frames: the gapless padding matters


def _tags(**changes) -> TrackTags:
    values = dict(
        title="phase1 calm (improved) — ünïcode",
        render_key="3f" * 32,
        model="facebook/musicgen-stereo-medium",
        seed=1234567,
        version="0.1.0",
        loop_start=0,
        loop_length=N,
        license="CC-BY-NC-4.0",
    )
    values.update(changes)
    return TrackTags(**values)


@pytest.fixture(scope="module", params=[1, 2], ids=["mono", "stereo"])
def encoded(request, tmp_path_factory) -> tuple[dict[str, Path], int]:
    """Untagged OGG, MP3 and FLAC of a short tone, straight from the encoder."""
    channels = request.param
    t = np.arange(N) / RATE
    pcm = np.stack([0.3 * np.sin(2 * np.pi * (440 + 110 * ch) * t) for ch in range(channels)]).astype(np.float32)
    out = tmp_path_factory.mktemp(f"enc{channels}")
    return encode(pcm, EncodeSettings(("ogg", "mp3", "flac"), RATE), out, "track"), channels


@pytest.fixture
def files(encoded, tmp_path) -> tuple[dict[str, Path], int]:
    """A fresh copy per test, named without extensions as the encoder's temp files are."""
    paths, channels = encoded
    copies = {}
    for fmt, path in paths.items():
        copies[fmt] = tmp_path / f".track.{fmt}.tmp-1234"
        shutil.copyfile(path, copies[fmt])
    return copies, channels


def ogg_comment_packet(path: Path) -> tuple[bytes, int]:
    """The raw Vorbis comment packet and the size of its first lacing segment, parsed from
    the page structure (not mutagen): the packet starts the second page."""
    data = path.read_bytes()
    pos, pages = 0, []
    while pos < len(data) and len(pages) < 4:
        assert data[pos : pos + 4] == b"OggS"
        count = data[pos + 26]
        lacing = data[pos + 27 : pos + 27 + count]
        body_start = pos + 27 + count
        pages.append((lacing, data[body_start : body_start + sum(lacing)]))
        pos = body_start + sum(lacing)
    lacing, body = pages[1]
    assert body[:7] == b"\x03vorbis"
    size = 0
    for seg in lacing:  # the packet ends at the first lacing value under 255
        size += seg
        if seg < 255:
            break
    else:
        body += pages[2][1]
        size = len(body)
    return body[:size], lacing[0]


def parse_comments(packet: bytes) -> tuple[str, list[tuple[str, str, int]]]:
    """(vendor, [(KEY, value, offset of the comment's end in the packet)])."""
    pos = 7
    (vendor_len,) = struct.unpack_from("<I", packet, pos)
    vendor = packet[pos + 4 : pos + 4 + vendor_len].decode()
    pos += 4 + vendor_len
    (count,) = struct.unpack_from("<I", packet, pos)
    pos += 4
    comments = []
    for _ in range(count):
        (length,) = struct.unpack_from("<I", packet, pos)
        text = packet[pos + 4 : pos + 4 + length].decode()
        pos += 4 + length
        key, _, value = text.partition("=")
        comments.append((key, value, pos))
    return vendor, comments


def test_ffmpeg_writes_an_encoder_comment_that_tagging_removes(files):
    paths, _ = files
    _, before = parse_comments(ogg_comment_packet(paths["ogg"])[0])
    assert [key.lower() for key, _, _ in before] == ["encoder"]
    write_tags(paths["ogg"], "ogg", _tags())
    _, after = parse_comments(ogg_comment_packet(paths["ogg"])[0])
    assert "encoder" not in {key.lower() for key, _, _ in after}


def test_all_tags_read_back_with_mutagen(files):
    paths, _ = files
    tags = _tags()
    expected = {
        "LOOPSTART": "0",
        "LOOPLENGTH": str(N),
        "TITLE": tags.title,
        "TRACKSPEC_RENDER_KEY": tags.render_key,
        "MUSICGEN_MODEL": tags.model,
        "SEED": "1234567",
        "TRACKSPEC_VERSION": "0.1.0",
        "LICENSE": "CC-BY-NC-4.0",
    }
    for fmt in ("ogg", "mp3", "flac"):
        write_tags(paths[fmt], fmt, tags)
        assert read_tags(paths[fmt], fmt) == expected, fmt

    ogg = OggVorbis(paths["ogg"]).tags
    for key, value in expected.items():
        assert ogg[key] == [value]
    id3 = ID3(paths["mp3"])
    assert id3.version == (2, 4, 0)
    assert id3["TIT2"].text == [tags.title]
    for key, value in expected.items():
        if key != "TITLE":
            assert id3[f"TXXX:{key}"].text == [value]


def test_loop_comments_come_first_within_255_bytes(files):
    paths, _ = files
    write_tags(paths["ogg"], "ogg", _tags(model="/very/long/local/model/path/" + "m" * 400))
    packet, first_segment = ogg_comment_packet(paths["ogg"])
    vendor, comments = parse_comments(packet)
    assert [(k, v) for k, v, _ in comments[:2]] == [("LOOPSTART", "0"), ("LOOPLENGTH", str(N))]
    assert first_segment == 255 and comments[1][2] <= first_segment
    assert vendor == "ffmpeg"  # kept from the encoder (bitexact)
    assert rpgmaker_loop_points(paths["ogg"]) == (0, N)


def test_comment_after_looplength_never_extends_its_digits(files):
    """The reader takes LOOPLENGTH's text up to a zero byte, so the next comment's length
    byte must not be an ASCII digit. With no seed and a 32-character version, the
    version's comment is 50 bytes long ('2')."""
    paths, _ = files
    tags = _tags(seed=None, version="v" * 32, loop_length=4321)

    naive = OggVorbis(paths["ogg"])
    naive.tags.clear()
    naive.tags.extend([("LOOPSTART", "0"), ("LOOPLENGTH", "4321"), ("TRACKSPEC_VERSION", "v" * 32)])
    naive.save()
    assert rpgmaker_loop_points(paths["ogg"]) == (0, 43212)  # what the guard prevents

    write_tags(paths["ogg"], "ogg", tags)
    assert rpgmaker_loop_points(paths["ogg"]) == (0, 4321)
    _, comments = parse_comments(ogg_comment_packet(paths["ogg"])[0])
    assert [k for k, _, _ in comments[:2]] == ["LOOPSTART", "LOOPLENGTH"]
    assert len(f"{comments[2][0]}={comments[2][1]}".encode()) & 0xFF not in range(0x30, 0x3A)


def test_tagging_keeps_every_decoded_sample(files):
    """An ID3 tag in front of the LAME/Xing frame must not lose the gapless info, and the
    rewritten Ogg header pages must not move the audio."""
    paths, channels = files
    before = {fmt: decode_pcm(path, RATE, channels, fmt=fmt).tobytes() for fmt, path in paths.items()}
    for fmt, path in paths.items():
        write_tags(path, fmt, _tags())
    for fmt, path in paths.items():
        assert decode_sample_count(path, RATE, channels, fmt=fmt) == N, fmt
        assert decode_pcm(path, RATE, channels, fmt=fmt).tobytes() == before[fmt], fmt
    head = paths["mp3"].read_bytes()
    tag_size = 10 + sum(b << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
    frame = head[tag_size : tag_size + 200]
    assert head[:3] == b"ID3" and frame[0] == 0xFF and (b"Info" in frame or b"Xing" in frame)


def test_no_loop_writes_no_loop_tags(files):
    paths, _ = files
    for fmt in ("ogg", "mp3"):
        write_tags(paths[fmt], fmt, _tags(loop_start=None, loop_length=None))
        found = read_tags(paths[fmt], fmt)
        assert "LOOPSTART" not in found and "LOOPLENGTH" not in found
        assert found["TITLE"] and found["TRACKSPEC_RENDER_KEY"] == "3f" * 32
    assert rpgmaker_loop_points(paths["ogg"]) == (None, None)


def test_retagging_replaces_and_is_deterministic(files, tmp_path):
    paths, _ = files
    for fmt in ("ogg", "mp3"):
        once = tmp_path / f"once.{fmt}"
        shutil.copyfile(paths[fmt], once)
        write_tags(once, fmt, _tags())
        write_tags(paths[fmt], fmt, _tags(title="old", seed=1, license=None))
        write_tags(paths[fmt], fmt, _tags())
        assert read_tags(paths[fmt], fmt) == read_tags(once, fmt)
        # Same audio and tags, same bytes, whatever the file held before (builds are bitexact).
        assert paths[fmt].read_bytes() == once.read_bytes()


def test_bad_arguments():
    with pytest.raises(ValueError, match="both"):
        _tags(loop_length=None)
    with pytest.raises(ValueError, match="loop points"):
        _tags(loop_length=0)
    with pytest.raises(ValueError, match="cannot tag 'wav'"):
        write_tags(Path("x.wav"), "wav", _tags())
