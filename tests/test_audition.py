"""`trackspec audition` and `trackspec pin` end to end: the real CLI, the tiny model, real
ffmpeg. Takes live in the cache only; pin edits the spec with tomlkit; the next build (or
a running daemon) publishes exactly the pinned take, restored with no generation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from helpers import assert_index_matches_disk, sha256
from test_watch import daemons  # noqa: F401  (the fixture: a real `trackspec watch --json`)
from watchproc import BARRIER

from importer.encode import decode_sample_count

SPEC = """\
# The boss fight: keep this comment, and the odd spacing below.
name    = "boss"
prompt  = '''
dark synth, driving bass
'''
duration = 2.0   # seconds

[generation]
temperature = 1.1  # a little wild

[output]
loop = true
loop_crossfade = 0.5

[meta]
bpm = 140
tags = ["boss", "loop"]
"""


@pytest.fixture
def repo(game_repo, tiny_model):
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    game_repo.write_spec("boss", SPEC)
    return game_repo


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under the assets folder with its digest and mtime."""
    assets = root / "assets"
    return (
        {p.relative_to(root).as_posix(): (sha256(p), p.stat().st_mtime_ns) for p in assets.rglob("*") if p.is_file()}
        if assets.exists()
        else {}
    )


SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "importer/schemas/audition.schema.json").read_text())


def audition(repo, *args: str) -> dict:
    result = repo.run("audition", "boss", "--json", *args, check_rc=0)
    jsonschema.validate(result.json(), SCHEMA)
    return result.json() | {"imported": result.imported}


def cached_file(repo, take: dict, fmt: str) -> Path:
    key = take["keys"]["render"]
    return repo.cache / "v1" / "render" / key[:2] / key / f"audio.{fmt}"


def test_audition_makes_distinct_takes_and_leaves_assets_and_index_alone(repo):
    repo.run("build", check_rc=0)
    before = snapshot(repo.root)
    assert "assets/music/index.json" in before

    first = audition(repo, "--takes", "3")
    takes = first["takes"]
    assert [t["take"] for t in takes] == [1, 2, 3]
    assert [t["action"] for t in takes] == ["generated"] * 3
    assert len({t["seed"] for t in takes}) == 3
    assert len({t["files"]["ogg"]["sha256"] for t in takes}) == 3  # three different pieces of audio
    for take in takes:
        for fmt in ("ogg", "mp3"):
            path = cached_file(repo, take, fmt)
            assert sha256(path) == take["files"][fmt]["sha256"]
            assert decode_sample_count(path, 44100, take["channels"]) == round(take["duration"] * 44100)
        assert take["duration"] == pytest.approx(1.5)  # 2 s less the 0.5 s loop crossfade
    assert snapshot(repo.root) == before  # not one byte of the assets or the index changed

    again = audition(repo, "--takes", "3")  # the same takes, from the cache: nothing generated
    assert [t["action"] for t in again["takes"]] == ["cached"] * 3
    assert [t["files"] for t in again["takes"]] == [t["files"] for t in takes]
    assert "torch" not in again["imported"]
    assert snapshot(repo.root) == before


def test_pin_writes_only_the_seed_and_the_build_publishes_that_take_from_the_cache(repo):
    takes = audition(repo, "--takes", "3")["takes"]
    spec = repo.root / "track_specs/boss.trackspec"
    original = spec.read_bytes()

    pinned = repo.run("pin", "boss", "2", "--json", check_rc=0).json()
    assert pinned["seed"] == takes[1]["seed"] and pinned["cached"] is True and pinned["previous_seed"] is None
    lines = spec.read_bytes().splitlines(keepends=True)
    added = [line for line in lines if line.startswith(b"seed")]
    assert added == [f"seed = {takes[1]['seed']}\n".encode()]
    assert b"".join(line for line in lines if line not in added) == original  # the rest, byte for byte

    build = repo.run("build", "--json", check_rc=0)
    assert "torch" not in build.imported  # no generation
    [result] = build.json()["tracks"]
    assert result["action"] == "restore"
    entry = assert_index_matches_disk(repo)["tracks"]["boss"]
    assert entry["seed"] == takes[1]["seed"]
    for fmt in ("ogg", "mp3"):
        assert entry["files"][fmt]["sha256"] == takes[1]["files"][fmt]["sha256"]


def test_pin_replaces_an_existing_seed_and_keeps_its_comment(repo):
    spec = repo.root / "track_specs/boss.trackspec"
    spec.write_text(SPEC.replace("duration = 2.0", "seed = 7  # the old favourite\nduration = 2.0"))
    original = spec.read_text()
    takes = audition(repo, "--takes", "2")["takes"]
    repo.run("pin", "boss", "1", check_rc=0)
    expected = original.replace("seed = 7  # the old favourite", f"seed = {takes[0]['seed']}  # the old favourite")
    assert spec.read_text() == expected


def test_a_symlinked_spec_is_edited_through_its_link(repo, tmp_path):
    spec = repo.root / "track_specs/boss.trackspec"
    real = repo.root / "shared_specs/boss.trackspec"
    real.parent.mkdir()
    spec.rename(real)
    os.symlink(os.path.relpath(real, spec.parent), spec)
    takes = audition(repo, "--takes", "1")["takes"]
    repo.run("pin", "boss", "1", check_rc=0)
    assert spec.is_symlink() and f"seed = {takes[0]['seed']}" in real.read_text()


def test_previews_are_short_and_pinning_one_says_the_build_generates(repo):
    takes = audition(repo, "--takes", "2", "--seconds", "1")["takes"]
    assert all(t["preview"] and t["seconds"] == 1.0 for t in takes)
    for take in takes:  # a preview too short for the 0.5 s crossfade loops with a quarter of it
        assert take["duration"] == pytest.approx(0.75)
        assert decode_sample_count(cached_file(repo, take, "ogg"), 44100, take["channels"]) == round(0.75 * 44100)
    pin = repo.run("pin", "boss", "2", check_rc=0)
    assert "preview" in pin.stderr and "generates the full length" in pin.stderr
    build = repo.run("build", "--json", check_rc=0)
    assert build.json()["tracks"][0]["action"] == "generate"
    assert repo.index()["tracks"]["boss"]["seed"] == takes[1]["seed"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("pin", "boss", "1"), "no audition to pin from; run `trackspec audition boss` first"),
        (("audition", "nosuch"), "no track named 'nosuch'"),
        (("audition", "boss", "--takes", "0"), "--takes must be between 1 and 32"),
        (("audition", "boss", "--seconds", "-1"), "--seconds must be between 0 and 600"),
    ],
)
def test_bad_requests_exit_1_and_say_why(repo, args, message):
    spec = repo.root / "track_specs/boss.trackspec"
    before = spec.read_bytes()
    result = repo.run(*args, check_rc=1)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert spec.read_bytes() == before


def test_pinning_a_take_the_audition_did_not_make_fails(repo):
    audition(repo, "--takes", "1")
    result = repo.run("pin", "boss", "5", check_rc=1)
    assert "has no take 5; its last audition has takes 1" in result.stderr


def test_a_running_daemon_publishes_a_pinned_take_at_once(repo, daemons):  # noqa: F811
    takes = audition(repo, "--takes", "2")["takes"]
    daemon = daemons(repo)
    try:
        first = daemon.finished("boss", ok=True)  # the first build generates the spec's own seed
        daemon.wait_for(lambda e: e["event"] == "index_written", after=daemon.events.index(first))
        mark = daemon.mark()
        repo.run("pin", "boss", "2", check_rc=0)
        event = daemon.finished("boss", after=mark, ok=True)
        assert event["action"] == "restore"  # from the audition's cache entry: no generation
        assert daemon.since(mark, "generated") == []
        # The index is written at the end of the cycle, after the track's line.
        daemon.wait_for(lambda e: e["event"] == "index_written", after=daemon.events.index(event))
        entry = assert_index_matches_disk(repo)["tracks"]["boss"]
        assert entry["files"]["ogg"]["sha256"] == takes[1]["files"]["ogg"]["sha256"]
    finally:
        assert daemon.stop() == 0


def test_a_take_that_cannot_be_encoded_fails_alone_and_cannot_be_pinned(repo):
    repo.env["TRACKSPEC_FFMPEG"] = str(repo.root / "no-such-ffmpeg")
    result = repo.run("audition", "boss", "--takes", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.count("FAILED: TRACKSPEC_FFMPEG is") == 2, result.stdout
    pin = repo.run("pin", "boss", "1", check_rc=1)
    assert "failed in its audition" in pin.stderr
    del repo.env["TRACKSPEC_FFMPEG"]  # the raw audio is cached: now the takes only need encoding
    takes = audition(repo, "--takes", "2")["takes"]
    assert [t["action"] for t in takes] == ["encoded", "encoded"]


def test_a_running_daemon_generates_the_takes_with_its_loaded_model(repo, daemons):  # noqa: F811
    daemon = daemons(repo)
    try:
        first = daemon.finished("boss", ok=True)
        daemon.wait_for(lambda e: e["event"] == "index_written", after=daemon.events.index(first))
        published = repo.index()["tracks"]["boss"]
        mark = daemon.mark()
        result = repo.run("audition", "boss", "--takes", "2", "--json", check_rc=0)
        assert "torch" not in result.imported  # the daemon generated them: this process loaded no model
        takes = result.json()["takes"]
        assert [t["action"] for t in takes] == ["generated", "generated"]
        assert {e["name"] for e in daemon.since(mark, "generated")} == {"boss take 1", "boss take 2"}
        for take in takes:
            assert sha256(cached_file(repo, take, "ogg")) == take["files"]["ogg"]["sha256"]
        daemon.barrier((repo.root / "track_specs" / "boss.trackspec").read_text())  # every cycle since is over
        assert [e["name"] for e in daemon.since(mark, "finished")] == [BARRIER] * 2, daemon.log()
        assert repo.index()["tracks"]["boss"] == published  # takes are never published
        assert list((repo.root / ".trackspec/requests").iterdir()) == []  # request and answer cleaned up
    finally:
        assert daemon.stop() == 0
