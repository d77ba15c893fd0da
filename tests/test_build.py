"""`trackspec build` end to end: real CLI subprocesses, the tiny model, real ffmpeg."""

from __future__ import annotations

import json
from pathlib import Path

import mutagen
import numpy as np
import pytest
from helpers import assert_index_matches_disk

from importer.encode import decode_pcm

SPEC_A = """\
name = "calm"
prompt = "calm synthwave, D minor, 90 BPM"
duration = 1.5
seed = 11

[output]
formats = ["ogg", "mp3"]

[meta]
bpm = 90
key = "D minor"
"""

SPEC_B = """\
prompt = "tense ambient drone"
duration = 1.5
genre = "ambient"

[output]
formats = ["ogg", "mp3", "wav", "flac"]
"""


def actions(result) -> dict[str, tuple[str, list[str]]]:
    return {t["name"]: (t["action"], t["reasons"]) for t in result.json()["tracks"] if t["name"]}


@pytest.fixture
def built(game_repo, tiny_model):
    """A repo with two specs, built once with the tiny model."""
    game_repo.write_spec("calm", SPEC_A)
    game_repo.write_spec("drone", SPEC_B)
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    first = game_repo.run("build", "--json", check_rc=0)
    return game_repo, first


def test_first_build_generates_and_publishes_exact_files(built):
    repo, first = built
    assert actions(first) == {"calm": ("generate", ["new"]), "drone": ("generate", ["new"])}
    index = assert_index_matches_disk(repo)
    calm = index["tracks"]["calm"]
    expected = round(round(1.5 * 32000) * 44100 / 32000)
    assert calm["samples"] == expected == 66150
    assert (calm["sample_rate"], calm["channels"], calm["duration"]) == (44100, 1, 1.5)
    assert calm["files"]["ogg"]["path"] == "assets/music/synthwave/calm.ogg"
    assert calm["files"]["mp3"]["path"] == "assets/music/synthwave/calm.mp3"
    assert calm["meta"] == {"bpm": 90, "key": "D minor"} and calm["seed"] == 11
    assert calm["spec"] == "track_specs/calm.trackspec"
    drone = index["tracks"]["drone"]
    assert sorted(drone["files"]) == ["flac", "mp3", "ogg", "wav"]
    assert drone["files"]["wav"]["path"] == "assets/music/ambient/drone.wav"
    assert 0 <= drone["seed"] < 2**32  # derived from the spec
    # nothing half-written anywhere in the assets
    leftovers = [p for p in (repo.root / "assets").rglob("*") if "trackspec-tmp" in p.name]
    assert leftovers == []


def test_second_build_is_a_noop_without_heavy_imports(built):
    repo, _ = built
    index_before = (repo.root / "assets/music/index.json").read_bytes()
    second = repo.run("build", "--json", check_rc=0)
    assert actions(second) == {"calm": ("fresh", []), "drone": ("fresh", [])}
    assert second.imported == []  # no torch, transformers, numpy or soxr
    assert (repo.root / "assets/music/index.json").read_bytes() == index_before
    text = repo.run("build", check_rc=0)
    assert "fresh     calm" in text.stdout and "2 up to date" in text.stderr


def test_check_mode_reports_stale_and_writes_nothing(game_repo, tiny_model):
    game_repo.write_spec("calm", SPEC_A)
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    check = game_repo.run("build", "--check", check_rc=1)
    assert "stale     calm  (generate: new)" in check.stdout
    assert check.imported == []
    assert not (game_repo.root / "assets").exists() and not game_repo.cache.exists()
    assert not (game_repo.root / ".trackspec" / "state.json").exists()
    game_repo.run("build", check_rc=0)
    again = game_repo.run("build", "--check", check_rc=0)
    assert again.imported == []


def test_only_ogg_quality_changed_reencodes_without_generating(built):
    repo, _ = built
    index = repo.index()
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text(spec.read_text().replace('formats = ["ogg", "mp3"]', 'formats = ["ogg", "mp3"]\nogg_quality = 2'))
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"] == ("encode", ["ogg_quality changed"])
    assert actions(result)["drone"] == ("fresh", [])
    assert "torch" not in result.imported and "transformers" not in result.imported
    after = assert_index_matches_disk(repo)
    assert after["tracks"]["calm"]["keys"]["generation"] == index["tracks"]["calm"]["keys"]["generation"]
    assert after["tracks"]["calm"]["keys"]["render"] != index["tracks"]["calm"]["keys"]["render"]
    assert after["tracks"]["calm"]["files"]["ogg"]["sha256"] != index["tracks"]["calm"]["files"]["ogg"]["sha256"]


def test_only_meta_changed_rewrites_only_the_index(built):
    repo, _ = built
    ogg = repo.root / "assets/music/synthwave/calm.ogg"
    before = ogg.stat()
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text(
        spec.read_text()
        .replace("bpm = 90", "bpm = 92\ntags = ['calm']")
        .replace("prompt =", '# edited comment\ndescription = "new words"\nprompt =')
    )
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"][0] == "index"
    assert result.imported == []  # no audio work at all
    assert ogg.stat().st_ino == before.st_ino and ogg.stat().st_mtime_ns == before.st_mtime_ns
    assert repo.index()["tracks"]["calm"]["meta"] == {"bpm": 92, "key": "D minor", "tags": ["calm"]}


def test_prompt_change_regenerates_and_says_why(built):
    repo, _ = built
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text(spec.read_text().replace("D minor, 90 BPM", "E minor, 92 BPM"))
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"] == ("generate", ["prompt changed"])
    spec.write_text(spec.read_text().replace("E minor, 92 BPM", "D minor, 90 BPM"))
    back = repo.run("build", "--json", check_rc=0)
    assert actions(back)["calm"] == ("restore", ["prompt changed"])  # the old take is in the cache
    assert "torch" not in back.imported
    assert_index_matches_disk(repo)


def test_hand_edited_or_deleted_outputs_are_restored(built):
    repo, _ = built
    index = repo.index()
    ogg = repo.root / "assets/music/synthwave/calm.ogg"
    ogg.write_bytes(b"not an ogg")
    (repo.root / "assets/music/ambient/drone.mp3").unlink()
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"] == ("restore", ["output modified (ogg)"])
    assert actions(result)["drone"] == ("restore", ["output missing (mp3)"])
    assert repo.index() == index
    assert_index_matches_disk(repo)


def _entry_dirs(cache: Path, kind: str) -> list[Path]:
    return sorted(p.parent for p in (cache / "v1" / kind).glob("*/*/manifest.json"))


def test_corrupt_cache_entries_are_detected_and_rebuilt(built):
    repo, _ = built
    index = repo.index()
    calm_render = (
        repo.cache
        / "v1/render"
        / index["tracks"]["calm"]["keys"]["render"][:2]
        / index["tracks"]["calm"]["keys"]["render"]
    )
    calm_raw = (
        repo.cache
        / "v1/raw"
        / index["tracks"]["calm"]["keys"]["generation"][:2]
        / index["tracks"]["calm"]["keys"]["generation"]
    )
    raw_digest = json.loads((calm_raw / "manifest.json").read_text())["files"]["audio.f32"]["sha256"]

    # 1. truncated render entry: detected, re-encoded from the raw audio.
    ogg = calm_render / "audio.ogg"
    ogg.write_bytes(ogg.read_bytes()[:100])
    (repo.root / "assets/music/synthwave/calm.ogg").unlink()
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"][0] == "encode"
    assert "corrupt" in result.stderr
    assert_index_matches_disk(repo)

    # 2. a flipped byte in the raw audio and no render entry: regenerated, same audio.
    data = bytearray((calm_raw / "audio.f32").read_bytes())
    data[1000] ^= 0xFF
    (calm_raw / "audio.f32").write_bytes(bytes(data))
    for entry in _entry_dirs(repo.cache, "render"):
        if entry.name == index["tracks"]["calm"]["keys"]["render"]:
            for f in entry.iterdir():
                f.unlink()
            entry.rmdir()
    (repo.root / "assets/music/synthwave/calm.mp3").unlink()
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"][0] == "generate"
    assert json.loads((calm_raw / "manifest.json").read_text())["files"]["audio.f32"]["sha256"] == raw_digest
    assert_index_matches_disk(repo)


def test_deleting_a_spec_removes_its_entry_and_files(built):
    repo, _ = built
    (repo.root / "track_specs/drone.trackspec").unlink()
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["drone"] == ("remove", ["spec deleted"])
    assert sorted(repo.index()["tracks"]) == ["calm"]
    assert not (repo.root / "assets/music/ambient").exists()
    assert (repo.root / "assets/music/synthwave/calm.ogg").is_file()


def test_genre_change_moves_the_files(built):
    repo, _ = built
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text('genre = "chill"\n' + spec.read_text())
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"][0] == "restore"
    assert repo.index()["tracks"]["calm"]["files"]["ogg"]["path"] == "assets/music/chill/calm.ogg"
    assert not (repo.root / "assets/music/synthwave").exists()
    assert_index_matches_disk(repo)


def test_a_bad_spec_fails_alone_and_keeps_its_last_good_asset(built):
    repo, _ = built
    index = repo.index()
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text(spec.read_text().replace("duration = 1.5", "duration = -2"))
    repo.write_spec("new_one", 'prompt = "bright arcade"\nduration = 1.0\n')
    result = repo.run("build", check_rc=1)
    assert f"{spec}:3:1: duration: -2 is out of range" in result.stdout
    assert "generate  new_one  (new)" in result.stdout
    after = repo.index()
    assert after["tracks"]["calm"] == index["tracks"]["calm"]
    assert (repo.root / "assets/music/synthwave/calm.ogg").is_file()
    assert "new_one" in after["tracks"]


def test_duplicate_names_fail_with_both_files(game_repo, tiny_model):
    game_repo.write_spec("one", 'name = "same"\nprompt = "x"\nduration = 1.0\n')
    game_repo.write_spec("two", 'name = "same"\nprompt = "y"\nduration = 1.0\n')
    result = game_repo.run("build", "--model", str(tiny_model), check_rc=1)
    assert (
        result.stdout.count("track name 'same' is claimed by track_specs/one.trackspec and track_specs/two.trackspec")
        == 2
    )


def test_same_audio_alone_and_batched_through_the_build(game_repo, tiny_model, tmp_path):
    """Two stale specs of one model and length share a batch; each sounds as it would alone."""
    game_repo.write_spec("calm", SPEC_A)
    game_repo.write_spec("other", SPEC_A.replace('name = "calm"', 'name = "other"').replace("seed = 11", "seed = 12"))
    batched = game_repo.run("build", "--json", "--model", str(tiny_model), check_rc=0)
    assert actions(batched)["calm"][0] == actions(batched)["other"][0] == "generate"
    assert "generating calm" in batched.stderr  # progress lines in a non-interactive log
    assert batched.stderr.count("model loaded") == 1
    raw_batched = {
        json.loads(m.read_text())["info"]["seed"]: json.loads(m.read_text())["files"]["audio.f32"]["sha256"]
        for m in (game_repo.cache / "v1/raw").glob("*/*/manifest.json")
    }
    (game_repo.root / "track_specs/other.trackspec").unlink()
    game_repo.cache = tmp_path / "cache-alone"
    game_repo.env["TRACKSPEC_CACHE_DIR"] = str(game_repo.cache)
    for path in (game_repo.root / "assets").rglob("*.ogg"):
        path.unlink()
    alone = game_repo.run("build", "--json", "--model", str(tiny_model), check_rc=0)
    assert actions(alone)["calm"][0] == "generate"
    [manifest] = list((game_repo.cache / "v1/raw").glob("*/*/manifest.json"))
    assert json.loads(manifest.read_text())["files"]["audio.f32"]["sha256"] == raw_batched[11]


def test_windowed_track_builds_as_one_piece(game_repo, tiny_model):
    game_repo.write_spec(
        "long",
        'prompt = "slow pads"\nduration = 2.5\nseed = 4\n'
        "[generation]\nwindow = 1.0\nwindow_stride = 0.6\n"
        '[output]\nformats = ["wav"]\n',
    )
    game_repo.run("build", "--model", str(tiny_model), check_rc=0)
    index = assert_index_matches_disk(game_repo)
    assert index["tracks"]["long"]["samples"] == round(2.5 * 44100)


def test_hub_model_offline_gives_a_clear_error(game_repo):
    game_repo.write_spec("hub", 'prompt = "x"\nduration = 1.0\n[generation]\nmodel = "facebook/musicgen-small"\n')
    game_repo.env.update(HF_HUB_OFFLINE="1", HF_HOME=str(game_repo.root.parent / "hf-home"))
    result = game_repo.run("build", check_rc=1)
    assert "cannot download model 'facebook/musicgen-small'" in result.stdout
    assert "local model directory" in result.stdout
    assert not (game_repo.root / "assets/music/index.json").exists() or game_repo.index()["tracks"] == {}


def test_init_writes_a_commented_config_and_refuses_to_overwrite(tmp_path, game_repo):
    root = tmp_path / "newgame"
    result = game_repo.run("init", "--root", str(root), check_rc=0)
    text = (root / "trackspec.toml").read_text()
    assert "# trackspec project file" in text and "facebook/musicgen-medium" in text
    assert "TRACKSPEC_CACHE_DIR overrides" in text
    assert (root / "track_specs").is_dir()
    again = game_repo.run("init", "--root", str(root), check_rc=2)
    assert "already exists" in again.stderr and (root / "trackspec.toml").read_text() == text
    (root / "track_specs/x.trackspec").write_text('prompt = "x"\n')
    check = game_repo.run("build", "--check", "--root", str(root), check_rc=1)
    assert "stale     x" in check.stdout
    assert result.returncode == 0


def test_usage_errors_exit_2(game_repo, tmp_path):
    assert game_repo.run("build", "--bogus").returncode == 2
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    result = game_repo.run("build", "--root", str(elsewhere), check_rc=2)
    assert "trackspec init" in result.stderr
    (game_repo.root / "trackspec.toml").write_text('specs = ["track_specs"]\nassets = 3\n')
    result = game_repo.run("build", check_rc=2)
    assert "trackspec.toml:2:1: assets: must be a string" in result.stderr


def test_moved_track_is_restored_from_its_published_files_without_the_cache(built):
    """Moving a track to another genre folder costs a copy, not a generation, even with the
    cache wiped: its published files are exactly the render it needs."""
    repo, _ = built
    old = repo.index()["tracks"]["calm"]
    import shutil

    shutil.rmtree(repo.cache)
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text('genre = "exploration"\n' + spec.read_text())
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"][0] == "restore"
    assert "torch" not in result.imported
    index = assert_index_matches_disk(repo)
    assert index["tracks"]["calm"]["files"]["ogg"]["path"] == "assets/music/exploration/calm.ogg"
    assert index["tracks"]["calm"]["files"]["ogg"]["sha256"] == old["files"]["ogg"]["sha256"]
    assert not (repo.root / "assets/music/synthwave/calm.ogg").exists()


def test_renamed_track_is_restored_from_its_published_files_with_its_new_title(built):
    """Renaming a spec's track costs a copy, not a generation, even with the cache wiped; the
    copies are retagged, since the files name their track."""
    repo, _ = built
    import shutil

    shutil.rmtree(repo.cache)
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text(spec.read_text().replace('name = "calm"', 'name = "calm_renamed"'))
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm_renamed"] == ("restore", ["new"])
    assert actions(result)["calm"] == ("remove", ["spec renamed the track"])
    assert "torch" not in result.imported
    index = assert_index_matches_disk(repo)
    assert sorted(index["tracks"]) == ["calm_renamed", "drone"]
    assert not (repo.root / "assets/music/synthwave/calm.ogg").exists()
    for fmt in ("ogg", "mp3"):
        tags = mutagen.File(repo.root / index["tracks"]["calm_renamed"]["files"][fmt]["path"]).tags
        title = dict(list(tags))["TITLE"] if fmt == "ogg" else str(tags["TIT2"].text[0])
        assert title == "calm_renamed"
    assert repo.run("build", "--json", check_rc=0).json()["tracks"][0]["action"] == "fresh"


def test_reasons_survive_a_lost_state_file(built):
    """The per-machine state is optional: the cache remembers what a key was made from."""
    repo, _ = built
    (repo.root / ".trackspec/state.json").unlink()
    spec = repo.root / "track_specs/calm.trackspec"
    spec.write_text(
        spec.read_text()
        .replace("seed = 11", "seed = 12")
        .replace('formats = ["ogg", "mp3"]', 'formats = ["ogg", "mp3"]\nmp3_quality = 2')
    )
    result = repo.run("build", "--json", check_rc=0)
    assert actions(result)["calm"] == ("generate", ["seed changed"])


def test_moving_the_assets_folder_moves_the_files(built):
    repo, _ = built
    (repo.root / "trackspec.toml").write_text(
        'specs = ["track_specs"]\nassets = "game/audio"\nindex = "assets/music/index.json"\n'
    )
    result = repo.run("build", "--json", check_rc=0)
    assert {a for a, _ in actions(result).values()} == {"restore"}
    index = assert_index_matches_disk(repo)
    assert index["tracks"]["calm"]["files"]["ogg"]["path"] == "game/audio/synthwave/calm.ogg"
    assert sorted(p.name for p in (repo.root / "assets/music").rglob("*") if p.is_file()) == ["index.json"]


def test_identical_audio_in_one_build_is_generated_once(game_repo, tiny_model):
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    for name in ("twin_a", "twin_b", "twin_c"):
        game_repo.write_spec(name, SPEC_A.replace('name = "calm"\n', ""))
    result = game_repo.run("build", "--json", check_rc=0)
    assert sorted(a for a, _ in actions(result).values()) == ["generate", "restore", "restore"]
    assert len(_entry_dirs(game_repo.cache, "raw")) == 1
    assert len(_entry_dirs(game_repo.cache, "render")) == 1
    index = assert_index_matches_disk(game_repo)
    assert sorted(index["tracks"]) == ["twin_a", "twin_b", "twin_c"]
    audio = [decode_pcm(game_repo.root / t["files"]["ogg"]["path"], 44100, 1) for t in index["tracks"].values()]
    assert all(np.array_equal(audio[0], other) for other in audio[1:])  # one take, one encode
    titles = [
        dict(list(mutagen.File(game_repo.root / t["files"]["ogg"]["path"]).tags))["TITLE"]
        for t in index["tracks"].values()
    ]
    assert titles == ["twin_a", "twin_b", "twin_c"]  # each copy names its own track
