"""What must hold after any fault, checked from the outside (files on disk, the index).

``check_tree`` is the post-fault invariant: no temp or partial file in the assets folder,
an index that parses and validates, listing only files whose size and sha256 match.
``check_complete`` is what a finished build must add: every listed file decodes to its
recorded length and nothing unlisted lies in the assets folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "importer/schemas/index.schema.json").read_text())
TEMP_MARKER = ".trackspec-tmp"


@dataclass
class Tally:
    """Counters for the summary line the suite prints at its end."""

    trials: int = 0
    faults_survived: int = 0
    inputs: int = 0
    lost: int = 0
    #: Files or folders outside the game repo that a trial found changed (trust boundaries).
    outside: int = 0
    #: Secrets found in an output channel (console, -v log, --json, index, report).
    leaked: int = 0
    used: bool = False

    def trial(self) -> None:
        self.trials += 1
        self.used = True

    def survived(self) -> None:
        self.faults_survived += 1

    def input(self, n: int = 1) -> None:
        self.inputs += n
        self.used = True


TALLY = Tally()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_tree(root: Path, assets: str = "assets/music", index: str = "assets/music/index.json") -> list[str]:
    """Problems of the tree right after a fault (``[]``: it holds). Counts each into ``TALLY.lost``."""
    problems = []
    assets_dir, index_path = root / assets, root / index
    for path in sorted(assets_dir.rglob("*")) if assets_dir.exists() else []:
        if path.is_file() and (TEMP_MARKER in path.name or path.name.startswith(".")):
            problems.append(f"temp file left in the assets: {path.relative_to(root)}")
    if index_path.exists():
        try:
            data = json.loads(index_path.read_text("utf-8"))
            jsonschema.validate(data, SCHEMA)
        except (ValueError, jsonschema.ValidationError) as exc:
            problems.append(f"index broken: {str(exc)[:300]}")
            data = {"tracks": {}}
        for name, track in data["tracks"].items():
            for fmt, info in track["files"].items():
                path = root / info["path"]
                if not path.is_file():
                    problems.append(f"{name}.{fmt}: listed but missing ({info['path']})")
                elif path.stat().st_size != info["bytes"] or sha256(path) != info["sha256"]:
                    problems.append(f"{name}.{fmt}: listed sha256/size differ from the file ({info['path']})")
    TALLY.lost += len(problems)
    return problems


def check_complete(
    root: Path, assets: str = "assets/music", index: str = "assets/music/index.json", decode: bool = False
) -> dict:
    """After a build that finished: ``check_tree``, plus no unlisted file in the assets."""
    problems = check_tree(root, assets, index)
    data = json.loads((root / index).read_text("utf-8"))
    listed = {info["path"] for t in data["tracks"].values() for info in t["files"].values()}
    on_disk = {str(p.relative_to(root)) for p in (root / assets).rglob("*") if p.is_file()} - {index}
    extra = sorted(on_disk - listed)
    if extra:
        problems.append(f"files nothing owns in the assets: {extra}")
        TALLY.lost += len(extra)
    if decode:
        from importer.encode import decode_sample_count

        for name, track in data["tracks"].items():
            for fmt, info in track["files"].items():
                got = decode_sample_count(root / info["path"], track["sample_rate"], track["channels"])
                if got != track["samples"]:
                    problems.append(f"{name}.{fmt}: decodes to {got} samples, index says {track['samples']}")
                    TALLY.lost += 1
    assert not problems, "\n".join(problems)
    return data
