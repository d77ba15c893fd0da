"""`trackspec doctor`: real CLI subprocesses against real repos, caches, locks and HF caches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
from filelock import FileLock

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "importer/schemas/doctor.schema.json").read_text())

SPEC = """\
name = "calm"
prompt = "calm synthwave"
duration = 1.0
"""

HUB_SPEC = (
    SPEC
    + """
[generation]
model = "{model}"
"""
)


def doctor(repo, *args: str, rc: int) -> dict:
    """``doctor --json`` with the expected exit code, validated against the shipped schema."""
    result = repo.run("doctor", *args, "--json", check_rc=rc)
    doc = result.json()
    jsonschema.validate(doc, SCHEMA)
    assert doc["ok"] is (rc == 0)
    assert "transformers" not in result.imported  # checked by its metadata, never imported
    return doc


def checks(doc: dict, name: str) -> list[dict]:
    return [c for c in doc["checks"] if c["name"] == name]


def one(doc: dict, name: str) -> dict:
    [check] = checks(doc, name)
    return check


def empty_hf_home(repo, tmp_path: Path) -> Path:
    home = tmp_path / "hf-home"
    home.mkdir()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_CACHE"):
        repo.env.pop(var, None)
    repo.env["HF_HOME"] = str(home)
    return home


def test_healthy_repo_with_the_tiny_model(game_repo, tiny_model):
    game_repo.write_spec("calm", SPEC)
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    doc = doctor(game_repo, rc=0)
    assert doc["root"] == str(game_repo.root.resolve())
    assert doc["cache_dir"] == str(game_repo.cache.resolve())
    for name in ("project", "ffmpeg", "torch", "transformers", "model", "cache", "repo_lock", "watch"):
        assert one(doc, name)["status"] == "ok", one(doc, name)
    assert one(doc, "ffmpeg")["details"]["encoders"] == {"libvorbis": True, "libmp3lame": True}
    model = one(doc, "model")
    assert model["details"]["kind"] == "local" and model["details"]["model_type"] == "musicgen"
    assert model["details"]["specs"] == ["track_specs/calm.trackspec"]
    assert one(doc, "cuda")["status"] in ("ok", "warn")
    assert doc["counts"]["fail"] == 0
    # it only looked: no cache folder, no state folder
    assert not game_repo.cache.exists() and not (game_repo.root / ".trackspec").exists()

    text = game_repo.run("doctor", check_rc=0)
    assert any(line.startswith("OK    ffmpeg: ") for line in text.stdout.splitlines())
    assert f"OK    model: {tiny_model} (used by track_specs/calm.trackspec)" in text.stdout
    assert "ready to build" in text.stderr


def test_a_missing_local_model_fails_and_says_what_to_do(game_repo):
    game_repo.write_spec("calm", SPEC)
    doc = doctor(game_repo, "--model", "/nonexistent/model", rc=1)
    model = one(doc, "model")
    assert model["status"] == "fail" and model["details"]["model"] == "/nonexistent/model"
    assert "/nonexistent/model does not exist" in model["message"]
    assert "save_pretrained" in model["hint"]
    text = game_repo.run("doctor", "--model", "/nonexistent/model", check_rc=1)
    assert "FAIL  model: model /nonexistent/model" in text.stdout
    assert "fix the FAIL lines" in text.stderr


def test_a_hub_model_absent_from_the_hf_cache_fails_without_downloading(game_repo, tmp_path):
    home = empty_hf_home(game_repo, tmp_path)
    game_repo.write_spec("calm", HUB_SPEC.format(model="facebook/musicgen-small"))
    doc = doctor(game_repo, rc=1)
    model = one(doc, "model")
    assert model["status"] == "fail" and model["details"]["kind"] == "hub"
    assert "facebook/musicgen-small@main (used by track_specs/calm.trackspec)" in model["message"]
    assert "is not in the Hugging Face cache" in model["message"]
    assert "hf download facebook/musicgen-small" in model["hint"]
    assert [p for p in home.rglob("*") if p.is_file()] == []  # nothing was fetched


def test_a_hub_model_in_the_hf_cache_is_found_offline(game_repo, tmp_path, tiny_model):
    home = empty_hf_home(game_repo, tmp_path)
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = home / "hub" / "models--acme--tiny-musicgen"
    (repo_dir / "snapshots" / commit).mkdir(parents=True)
    shutil.copyfile(tiny_model / "config.json", repo_dir / "snapshots" / commit / "config.json")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    game_repo.write_spec("calm", HUB_SPEC.format(model="acme/tiny-musicgen"))
    model = one(doctor(game_repo, rc=0), "model")
    assert model["status"] == "ok" and model["details"]["kind"] == "hub"
    assert "in the Hugging Face cache @main" in model["message"]


def test_cache_under_a_file_is_not_writable(game_repo, tiny_model, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    game_repo.env["TRACKSPEC_CACHE_DIR"] = str(blocker / "cache")
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    cache = one(doctor(game_repo, rc=1), "cache")
    assert cache["status"] == "fail" and "is not writable" in cache["message"]
    assert "TRACKSPEC_CACHE_DIR" in cache["hint"]


def test_a_held_repo_lock_and_a_running_daemon_are_reported(game_repo, tiny_model):
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    state = game_repo.root / ".trackspec"
    state.mkdir()
    repo_lock = FileLock(str(state / "lock"), thread_local=False)
    watch_lock = FileLock(str(state / "watch.lock"), thread_local=False)
    with repo_lock, watch_lock:
        doc = doctor(game_repo, rc=0)
        assert one(doc, "repo_lock")["status"] == "warn" and one(doc, "repo_lock")["details"] == {"held": True}
        assert "held by another trackspec process" in one(doc, "repo_lock")["message"]
        assert one(doc, "watch")["details"] == {"running": True}
    doc = doctor(game_repo, rc=0)
    assert one(doc, "repo_lock")["details"] == {"held": False}
    assert one(doc, "watch")["details"] == {"running": False}


def test_outside_a_repo_the_repo_checks_are_skipped(game_repo, tiny_model):
    (game_repo.root / "trackspec.toml").unlink()
    doc = doctor(game_repo, "--model", str(tiny_model), rc=0)
    assert doc["root"] is None and doc["cache_dir"] == str(game_repo.cache.resolve())
    assert one(doc, "project")["status"] == "warn" and "skipped" in one(doc, "project")["message"]
    assert checks(doc, "repo_lock") == [] and one(doc, "model")["status"] == "ok"


def test_a_broken_ffmpeg_override_fails(game_repo, tiny_model):
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    game_repo.env["TRACKSPEC_FFMPEG"] = "/nonexistent/ffmpeg"
    ffmpeg = one(doctor(game_repo, rc=1), "ffmpeg")
    assert ffmpeg["status"] == "fail" and "/nonexistent/ffmpeg" in ffmpeg["message"]
    assert "TRACKSPEC_FFMPEG" in ffmpeg["hint"]
