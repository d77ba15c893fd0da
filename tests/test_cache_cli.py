"""`trackspec cache ls|verify|gc|clear`: real CLI subprocesses on a cache filled by a real build."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jsonschema
import pytest
from gamerepo import PROJECT_ROOT, GameRepo
from helpers import assert_index_matches_disk

from importer.commands.cache import parse_size
from importer.doctor import human_bytes

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "importer/schemas/cache-ls.schema.json").read_text())

SPEC = """\
name = "{name}"
prompt = "cache test {name}"
duration = 1.0
seed = {seed}

[output]
formats = {formats}
"""


def write(repo, name: str, seed: int, formats: str = '["ogg", "mp3"]') -> None:
    repo.write_spec(name, SPEC.format(name=name, seed=seed, formats=formats))


def listing(repo, *args: str, command: str = "ls", rc: int = 0) -> dict:
    """Run ``cache <command> --json``, check its exit code and validate it against the shipped schema."""
    doc = repo.run("cache", command, *args, "--json", check_rc=rc).json()
    jsonschema.validate(doc, SCHEMA)
    assert doc["command"] == command
    return doc


def by_key(doc: dict) -> dict[tuple[str, str], dict]:
    return {(e["kind"], e["key"]): e for e in doc["entries"]}


def disk_bytes(directory: str) -> int:
    return sum(p.stat().st_size for p in Path(directory).iterdir() if p.is_file())


def set_last_used(entry: dict, when: float) -> None:
    os.utime(Path(entry["path"]) / "manifest.json", (when, when))


@pytest.fixture(scope="module")
def built_once(tmp_path_factory, tiny_model) -> GameRepo:
    """One real build of one track, made once per module (generating is the slow part)."""
    base = tmp_path_factory.mktemp("cache-cli")
    repo = GameRepo(
        base / "game",
        base / "cache",
        {
            **os.environ,
            "TRACKSPEC_CACHE_DIR": str(base / "cache"),
            "PYTHONPATH": str(PROJECT_ROOT),
            "TRACKSPEC_MODEL": str(tiny_model),
        },
    )
    (repo.root / "track_specs").mkdir(parents=True)
    (repo.root / "trackspec.toml").write_text('specs = ["track_specs"]\n', encoding="utf-8")
    write(repo, "alpha", 1)
    repo.run("build", check_rc=0)
    return repo


@pytest.fixture
def one_track(game_repo, built_once, tiny_model):
    """A private copy of that repo and its cache: one raw and one render entry."""
    shutil.copytree(built_once.root, game_repo.root, dirs_exist_ok=True)
    shutil.copytree(built_once.cache, game_repo.cache)
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    return game_repo


def test_ls_lists_raw_and_render_entries_with_their_sizes(one_track):
    repo = one_track
    keys = repo.index()["tracks"]["alpha"]["keys"]
    doc = listing(repo)
    assert doc["cache_dir"] == str(repo.cache.resolve())
    entries = by_key(doc)
    assert set(entries) == {("raw", keys["generation"]), ("render", keys["render"])}
    raw, render = entries["raw", keys["generation"]], entries["render", keys["render"]]
    for entry in (raw, render):
        assert entry["bytes"] == disk_bytes(entry["path"]) > 0
    assert raw["formats"] == [] and raw["files"] == ["audio.f32"]
    assert render["formats"] == ["mp3", "ogg"] and render["files"] == ["audio.mp3", "audio.ogg"]
    published = repo.root / "assets/music/synthwave/alpha.ogg"
    assert (Path(render["path"]) / "audio.ogg").read_bytes() == published.read_bytes()
    assert doc["total_bytes"] == raw["bytes"] + render["bytes"]
    assert doc["removed"] == [] and doc["freed_bytes"] == 0 and doc["max_bytes"] is None

    text = repo.run("cache", "ls", check_rc=0).stdout
    assert keys["generation"][:12] in text and keys["render"][:12] in text
    assert keys["render"] not in text  # short keys in text, full keys in JSON
    assert f"2 entries (1 raw, 1 render), {human_bytes(doc['total_bytes'])}" in text
    render_line = next(line for line in text.splitlines() if keys["render"][:12] in line)
    assert render_line.startswith("render") and render_line.endswith("mp3 ogg")


def test_ls_works_without_a_project_file_via_the_environment(one_track):
    repo = one_track
    before = listing(repo)
    (repo.root / "trackspec.toml").unlink()
    after = listing(repo)
    assert after["cache_dir"] == str(repo.cache.resolve())
    assert by_key(after).keys() == by_key(before).keys()


def test_listing_and_verifying_do_not_count_as_use(one_track):
    repo = one_track
    for entry in listing(repo)["entries"]:
        set_last_used(entry, 1_000_000)
    repo.run("cache", "ls", check_rc=0)
    repo.run("cache", "verify", check_rc=0)
    assert {e["last_used_unix"] for e in listing(repo)["entries"]} == {1_000_000}
    assert all(e["last_used"] == "1970-01-12T13:46:40Z" for e in listing(repo)["entries"])


def test_verify_finds_removes_and_a_build_restores_a_corrupt_entry(one_track):
    repo = one_track
    clean = listing(repo, command="verify")
    assert clean["removed"] == [] and len(clean["entries"]) == 2
    assert "all 2 entries intact" in repo.run("cache", "verify", check_rc=0).stdout

    render_key = repo.index()["tracks"]["alpha"]["keys"]["render"]
    render_dir = Path(by_key(clean)["render", render_key]["path"])
    ogg = render_dir / "audio.ogg"
    data = bytearray(ogg.read_bytes())
    data[len(data) // 2] ^= 0x01
    ogg.write_bytes(bytes(data))

    result = repo.run("cache", "verify", check_rc=1)
    assert f"corrupt render {render_key[:12]}" in result.stdout
    assert "audio.ogg: sha256 differs from the manifest; removed" in result.stdout
    assert "1 of 2 entries were corrupt and removed" in result.stdout
    assert not render_dir.exists()
    after = listing(repo, command="verify")
    assert ("render", render_key) not in by_key(after) and after["removed"] == []

    (repo.root / "assets/music/synthwave/alpha.ogg").unlink()
    rebuilt = repo.run("build", "--json", check_rc=0).json()
    assert [(t["name"], t["action"]) for t in rebuilt["tracks"]] == [("alpha", "encode")]
    assert_index_matches_disk(repo)
    assert len(listing(repo, command="verify")["entries"]) == 2


def test_verify_json_reports_the_corrupt_entry_and_why(one_track):
    repo = one_track
    raw_key = repo.index()["tracks"]["alpha"]["keys"]["generation"]
    raw_dir = Path(by_key(listing(repo))["raw", raw_key]["path"])
    (raw_dir / "audio.f32").write_bytes(b"short")
    doc = listing(repo, command="verify", rc=1)
    assert [(r["kind"], r["key"]) for r in doc["removed"]] == [("raw", raw_key)]
    assert doc["removed"][0]["reason"] == "audio.f32: size differs from the manifest"
    assert doc["freed_bytes"] == doc["removed"][0]["bytes"] > 0
    assert [e["kind"] for e in doc["entries"]] == ["render"] and not raw_dir.exists()


def test_gc_evicts_least_recently_used_entries_and_a_restore_counts_as_use(one_track):
    repo = one_track
    write(repo, "beta", 2, '["ogg"]')
    repo.run("build", check_rc=0)
    keys = {name: track["keys"] for name, track in repo.index()["tracks"].items()}
    entries = by_key(listing(repo))
    raw_a, render_a = entries["raw", keys["alpha"]["generation"]], entries["render", keys["alpha"]["render"]]
    raw_b, render_b = entries["raw", keys["beta"]["generation"]], entries["render", keys["beta"]["render"]]
    # render_a is made the oldest, then used by a restore: that must make it the newest
    for when, entry in enumerate((render_a, raw_a, raw_b, render_b), start=1):
        set_last_used(entry, 1_000_000 + when * 1000)
    (repo.root / "assets/music/synthwave/alpha.mp3").unlink()
    restored = repo.run("build", "--json", check_rc=0).json()
    assert {t["name"]: t["action"] for t in restored["tracks"]} == {"alpha": "restore", "beta": "fresh"}
    listed = by_key(listing(repo))
    assert listed["render", render_a["key"]]["last_used_unix"] > 1_000_000 + 4000
    assert listed["raw", raw_a["key"]]["last_used_unix"] == 1_000_000 + 2000

    total = sum(e["bytes"] for e in (raw_a, render_a, raw_b, render_b))
    doc = listing(repo, "--max-size", str(total - raw_a["bytes"]), command="gc")
    assert [(r["key"], r["reason"]) for r in doc["removed"]] == [(raw_a["key"], "least recently used")]
    assert doc["freed_bytes"] == raw_a["bytes"] and doc["total_bytes"] == total - raw_a["bytes"]
    assert doc["max_bytes"] == total - raw_a["bytes"]
    assert not Path(raw_a["path"]).exists()

    # a limit between one and two entries keeps only the most recently used one
    limit = render_a["bytes"] + 1
    text = repo.run("cache", "gc", "--max-size", str(limit), check_rc=0).stdout
    assert f"evicted raw     {raw_b['key'][:12]}" in text and f"evicted render  {render_b['key'][:12]}" in text
    assert f"freed {human_bytes(raw_b['bytes'] + render_b['bytes'])} (2 entries)" in text
    assert [(e["kind"], e["key"]) for e in listing(repo)["entries"]] == [("render", render_a["key"])]
    # the assets are untouched, so the build has nothing to do
    after = repo.run("build", "--json", check_rc=0).json()
    assert {t["action"] for t in after["tracks"]} == {"fresh"}


def test_gc_within_the_limit_removes_nothing(one_track):
    doc = listing(one_track, "--max-size", "1G", command="gc")
    assert doc["removed"] == [] and len(doc["entries"]) == 2 and doc["max_bytes"] == 1024**3


def test_clear_empties_the_cache_but_keeps_live_staging(one_track):
    repo = one_track
    before = listing(repo)
    live = repo.cache / "v1" / "tmp" / f"{os.getpid()}-0123456789ab"  # this test process is alive
    live.mkdir(parents=True)
    (live / "audio.f32").write_bytes(b"being written")
    text = repo.run("cache", "clear", check_rc=0).stdout
    assert f"removed 2 entries, freed {human_bytes(before['total_bytes'])}" in text
    assert listing(repo)["entries"] == []
    assert [p for p in (repo.cache / "v1").rglob("manifest.json")] == []
    assert (live / "audio.f32").read_bytes() == b"being written"
    again = listing(repo, command="clear")
    assert again["removed"] == [] and again["freed_bytes"] == 0


def test_clear_json_reports_what_was_freed(one_track):
    repo = one_track
    before = listing(repo)
    doc = listing(repo, command="clear")
    assert doc["freed_bytes"] == before["total_bytes"] and doc["total_bytes"] == 0
    assert {r["reason"] for r in doc["removed"]} == {"cleared"}
    assert {(r["kind"], r["key"]) for r in doc["removed"]} == set(by_key(before))


def test_bad_sizes_are_usage_errors(game_repo):
    result = game_repo.run("cache", "gc", "--max-size", "12XB")
    assert result.returncode == 2 and "'12XB' is not a size" in result.stderr
    assert game_repo.run("cache", "gc").returncode == 2  # --max-size is required


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1000", 1000),
        ("500M", 500 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1.5GiB", 1536 * 1024**2),
        ("1KB", 1000),
        ("3 mb", 3_000_000),
        ("0", 0),
        ("10b", 10),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected
