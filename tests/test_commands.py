"""`plan`, `status`, `new` and the JSON shapes of `build`: real CLI subprocesses.

Every --json output is validated against the schema shipped in importer/schemas/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from helpers import assert_index_matches_disk

SCHEMAS = Path(__file__).resolve().parents[1] / "importer" / "schemas"

SPEC = """\
prompt = "calm synth pad"
duration = 1.0
seed = 3

[output]
formats = ["ogg", "mp3"]

[meta]
bpm = 90
"""


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def by_name(doc: dict) -> dict[str | None, dict]:
    return {t["name"] or t["spec"]: t for t in doc["tracks"]}


@pytest.fixture
def repo(game_repo, tiny_model):
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    return game_repo


@pytest.fixture
def built(repo):
    """Four tracks built once; the cache also holds an older take of `restored`."""
    for name in ("fresh", "encoded", "indexed", "restored", "deleted", "touched"):
        repo.write_spec(name, SPEC)
    repo.write_spec("restored", SPEC.replace("calm", "older"))
    repo.run("build", "-q", check_rc=0)
    repo.write_spec("restored", SPEC)
    result = repo.run("build", "--json", check_rc=0)
    jsonschema.validate(result.json(), schema("build"))
    return repo


def test_plan_says_what_build_would_do_and_why_and_does_nothing(built):
    repo = built
    repo.write_spec("encoded", SPEC.replace('formats = ["ogg", "mp3"]', 'formats = ["ogg", "mp3"]\nogg_quality = 3'))
    repo.write_spec("indexed", SPEC.replace("bpm = 90", "bpm = 95"))
    repo.write_spec("restored", SPEC.replace("calm", "older"))
    repo.write_spec("brand_new", SPEC.replace("calm", "brand new"))
    (repo.root / "track_specs" / "deleted.trackspec").unlink()
    (repo.root / "assets/music/synthwave/touched.ogg").write_bytes(b"edited by hand")
    (repo.root / "track_specs" / "broken.trackspec").write_text('prompt = "x"\nduration = "long"\n')
    index_before = (repo.root / "assets/music/index.json").read_bytes()

    result = repo.run("plan", "--json")
    assert result.returncode == 1  # a spec has an error
    doc = result.json()
    jsonschema.validate(doc, schema("plan"))
    rows = by_name(doc)
    assert (rows["fresh"]["action"], rows["fresh"]["reasons"]) == ("fresh", [])
    assert (rows["encoded"]["action"], rows["encoded"]["reasons"]) == ("encode", ["ogg_quality changed"])
    assert rows["indexed"]["action"] == "index"
    assert (rows["restored"]["action"], rows["restored"]["reasons"]) == ("restore", ["prompt changed"])
    assert "cache hit" in rows["restored"]["explanation"]
    assert (rows["brand_new"]["action"], rows["brand_new"]["reasons"]) == ("generate", ["new"])
    assert (rows["deleted"]["action"], rows["deleted"]["reasons"]) == ("remove", ["spec deleted"])
    assert (rows["touched"]["action"], rows["touched"]["reasons"]) == ("restore", ["output modified (ogg)"])
    broken = rows["track_specs/broken.trackspec"]
    assert broken["action"] == "failed" and "broken.trackspec:2:" in broken["error"] and "duration" in broken["error"]
    assert rows["fresh"]["outputs"] == {
        "ogg": "assets/music/synthwave/fresh.ogg",
        "mp3": "assets/music/synthwave/fresh.mp3",
    }
    assert result.imported == []  # no torch, transformers, numpy or soxr

    text = repo.run("plan")
    assert "generate  brand_new  (new)" in text.stdout
    assert "encode    encoded  (ogg_quality changed)" in text.stdout
    assert "FAILED    track_specs/broken.trackspec" in text.stdout
    assert (repo.root / "assets/music/index.json").read_bytes() == index_before
    assert (repo.root / "assets/music/synthwave/touched.ogg").read_bytes() == b"edited by hand"

    (repo.root / "track_specs" / "broken.trackspec").unlink()
    assert repo.run("plan").returncode == 0  # stale tracks are no error for plan


def test_status_lists_state_sizes_and_build_times(built):
    repo = built
    repo.write_spec("indexed", SPEC.replace("bpm = 90", "bpm = 95"))
    result = repo.run("status", "--json", check_rc=0)
    doc = result.json()
    jsonschema.validate(doc, schema("status"))
    rows = by_name(doc)
    index = repo.index()["tracks"]
    fresh = rows["fresh"]
    assert fresh["state"] == "fresh" and fresh["duration"] == 1.0 and fresh["formats"] == ["ogg", "mp3"]
    assert fresh["bytes"] == {fmt: f["bytes"] for fmt, f in index["fresh"]["files"].items()}
    assert fresh["model"] == index["fresh"]["model"] and fresh["built"].endswith("Z")
    assert rows["indexed"]["state"] == "stale" and rows["indexed"]["reasons"]
    assert result.imported == []

    text = repo.run("status", check_rc=0).stdout
    header, *lines = text.splitlines()
    assert header.split() == [
        "TRACK",
        "STATE",
        "DURATION",
        "MODEL",
        "FORMATS",
        "SIZE",
        "LOUDNESS",
        "TEMPO",
        "LICENSE",
        "BUILT",
    ]
    fresh_line = next(line for line in lines if line.startswith("fresh "))
    assert " fresh " in fresh_line and "1 s" in fresh_line and "ogg,mp3" in fresh_line and "KiB" in fresh_line
    assert f"{fresh['lufs']:.1f} LUFS" in fresh_line and " CC0-1.0 " in fresh_line
    assert abs(fresh["lufs"] - -16.0) <= 0.5 and fresh["true_peak"] <= -1.0 and fresh["license"] == "CC0-1.0"
    assert "indexed: index entry changed" in text


def test_new_writes_a_commented_spec_that_builds_and_never_overwrites(repo):
    result = repo.run(
        "new", "boss_fight", "--prompt", "epic battle, 140 BPM", "--duration", "1", "--genre", "combat", check_rc=0
    )
    path = repo.root / "track_specs" / "boss_fight.trackspec"
    assert "track_specs/boss_fight.trackspec" in result.stdout
    text = path.read_text()
    assert 'prompt = "epic battle, 140 BPM"' in text and "# seed = 1234" in text and "[meta]" in text
    plan = repo.run("plan", "--json", check_rc=0).json()
    assert [(t["name"], t["action"], t["outputs"]["ogg"]) for t in plan["tracks"]] == [
        ("boss_fight", "generate", "assets/music/combat/boss_fight.ogg")
    ]

    again = repo.run("new", "boss_fight", "--prompt", "something else")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert path.read_text() == text
    bad_name = repo.run("new", "../escape", "--prompt", "x")
    assert bad_name.returncode == 2 and "name" in bad_name.stderr
    too_long = repo.run("new", "long", "--prompt", "x", "--duration", "4000")
    assert too_long.returncode == 2 and "max_duration" in too_long.stderr
    assert sorted(p.name for p in (repo.root / "track_specs").iterdir()) == ["boss_fight.trackspec"]
    assert not list(repo.root.parent.glob("escape*"))

    repo.run("build", "-q", check_rc=0)
    assert_index_matches_disk(repo)


def test_build_and_check_json_follow_their_schema(repo):
    repo.write_spec("a", SPEC)
    check = repo.run("build", "--check", "--json", check_rc=1)
    jsonschema.validate(check.json(), schema("build"))
    assert check.json()["check"] is True and check.json()["ok"] is False
    build = repo.run("build", "--json", check_rc=0)
    jsonschema.validate(build.json(), schema("build"))
    track = build.json()["tracks"][0]
    assert track["keys"]["generation"] == repo.index()["tracks"]["a"]["keys"]["generation"]


def _imported_by(repo, *args: str) -> tuple[int, set[str], str]:
    """Run the CLI under `python -X importtime`; the top-level modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "importer", *args],
        cwd=repo.root,
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    modules = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return proc.returncode, modules, proc.stdout


def test_check_on_a_thousand_built_specs_imports_no_heavy_module(repo):
    specs = repo.root / "track_specs"
    for i in range(1000):  # one take, a thousand names: one generation, the rest cache restores
        (specs / f"t{i:04d}.trackspec").write_text(SPEC)
    repo.run("build", "-q", check_rc=0, timeout=1200)
    rc, modules, _ = _imported_by(repo, "build", "--check")
    assert rc == 0
    assert "importer" in modules and "tomllib" in modules  # the measurement sees our imports
    assert not modules & {"torch", "transformers", "numpy", "soxr"}

    (specs / "t0007.trackspec").write_text(SPEC.replace("bpm = 90", "bpm = 91"))
    (specs / "t0008.trackspec").write_text(SPEC.replace("calm", "different"))
    rc, modules, out = _imported_by(repo, "build", "--check")
    assert rc == 1 and "stale     t0007  (index:" in out and "stale     t0008  (generate: prompt changed)" in out
    assert not modules & {"torch", "transformers", "numpy", "soxr"}
    assert os.path.getsize(repo.root / "assets/music/index.json") > 0
