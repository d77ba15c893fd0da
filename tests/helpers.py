"""Assertions shared by the end-to-end tests."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import jsonschema

from importer.encode import decode_sample_count

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "importer/schemas/index.schema.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_index_matches_disk(repo) -> dict:
    index = repo.index()
    jsonschema.validate(index, SCHEMA)
    for track in index["tracks"].values():
        for info in track["files"].values():
            path = repo.root / info["path"]
            assert path.is_file(), path
            assert sha256(path) == info["sha256"] and path.stat().st_size == info["bytes"]
            assert decode_sample_count(path, track["sample_rate"], track["channels"]) == track["samples"]
    return index


def theme(path: Path, seconds: float = 1.5, frequency: float = 440) -> Path:
    """A stereo 44.1 kHz Ogg Vorbis sine: another rate, channel count and format than the models'."""
    from importer.encode import ffmpeg_exe

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency={frequency}:duration={seconds}:sample_rate=44100",
            "-ac",
            "2",
            "-c:a",
            "libvorbis",
            str(path),
        ],
        check=True,
    )
    return path


def keys_of(root: Path) -> dict[str, dict]:
    """Each loaded track's generation inputs and key, as every command computes them."""
    from importer.config import load_config
    from importer.state import State
    from importer.tracks import load_tracks

    config = load_config(root)
    loaded, failures = load_tracks(config, State.in_folder(config.state_dir))
    assert not failures, [f.message for f in failures]
    return {t.spec.name: {"key": t.keys.generation, "inputs": t.keys.generation_inputs} for t in loaded}
