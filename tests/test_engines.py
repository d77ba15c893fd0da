"""Engine-native import (issue 19): Godot `.import` sidecars, repo-wide spec discovery, the Unity
and Unreal scripts.

No engine runs here (Debian has only Godot 3.2, which cannot read GDScript 2; there is no Unity or
Unreal), so the sidecars are checked against the layout Godot's importers define
(`ResourceImporterOggVorbis`, `ResourceImporterMP3`, `EditorFileSystem::_reimport_file`) and parsed
back with Python's own INI reader, independent of trackspec's parser.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from gamerepo import PROJECT_ROOT, GameRepo
from helpers import assert_index_matches_disk

from importer.engines.godot import (
    IMPORTERS,
    imported_path,
    merge_sidecar,
    new_sidecar,
    params_for,
    read_sidecar,
    stable_uid,
)

DATA = Path(__file__).parent / "data" / "godot"
HOOKS = PROJECT_ROOT / "build_hooks"

#: An index entry of a looped track in the shape issue 18 writes (tempo measured, loop starting
#: after a half-second intro and ending on the 4th beat at 120 BPM).
LOOPED = {
    "sample_rate": 44100,
    "samples": 88200,
    "loop": {"start": 22050, "length": 66150, "start_seconds": 0.5},
    "tempo": {
        "bpm": 120.0,
        "declared": None,
        "confidence": 0.9,
        "first_downbeat": {"seconds": 0.0, "samples": 0},
        "beats": 4,
        "bar_beats": 4,
    },
}
PLAIN = {"sample_rate": 44100, "samples": 88200, "loop": None}


def ini(text: str) -> dict[str, dict]:
    """A sidecar read by configparser (not trackspec's reader), values decoded as JSON."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # Godot's keys are case-sensitive
    parser.read_string(text)
    return {name: {key: json.loads(value) for key, value in parser[name].items()} for name in parser.sections()}


# ------------------------------------------------------------------------------ the sidecar format
@pytest.mark.parametrize("fmt", ["ogg", "mp3"])
@pytest.mark.parametrize("kind", ["loop", "plain"])
def test_sidecars_match_the_golden_files_and_godots_layout(fmt, kind):
    res = f"res://assets/music/combat/boss.{fmt}"
    entry = LOOPED if kind == "loop" else PLAIN
    text = new_sidecar(res, IMPORTERS[fmt], params_for(entry))
    golden = (DATA / f"boss_{kind}.{fmt}.import").read_text()
    assert text == golden
    parsed = ini(golden)
    assert list(parsed) == ["remap", "deps", "params"]  # [remap] first, as the editor writes it
    importer, resource_type, extension = {
        "ogg": ("oggvorbisstr", "AudioStreamOggVorbis", "oggvorbisstr"),
        "mp3": ("mp3", "AudioStreamMP3", "mp3str"),
    }[fmt]
    remap, deps, params = parsed["remap"], parsed["deps"], parsed["params"]
    assert remap["importer"] == importer and remap["type"] == resource_type
    assert remap["uid"].startswith("uid://") and set(remap["uid"][6:]) <= set("abcdefghijklmnopqrstuvwxy012345678")
    # Godot's own path for the import: res://.godot/imported/<file>-<md5 of the res:// path>.<ext>
    assert (
        remap["path"]
        == f"res://.godot/imported/boss.{fmt}-" + __import__("hashlib").md5(res.encode()).hexdigest() + f".{extension}"
    )
    assert deps == {"source_file": res, "dest_files": [remap["path"]]}
    assert list(params) == ["loop", "loop_offset", "bpm", "beat_count", "bar_beats"]  # the importers' order
    if kind == "loop":
        assert params == {"loop": True, "loop_offset": 0.5, "bpm": 120.0, "beat_count": 4, "bar_beats": 4}
    else:  # Godot's defaults
        assert params == {"loop": False, "loop_offset": 0, "bpm": 0, "beat_count": 0, "bar_beats": 4}
    assert read_sidecar(golden) == parsed  # trackspec's reader agrees with configparser


def test_beat_count_is_written_only_where_those_beats_end_the_loop():
    # Godot ends a loop after beat_count beats when bpm is set: 5 beats at 120 BPM (2.5 s) would cut
    # a loop that ends at 2.0 s short of nothing but play past the file; so Godot loops at the end.
    off_beat = {**LOOPED, "tempo": {**LOOPED["tempo"], "beats": 5}}
    assert params_for(off_beat)["beat_count"] == 0
    assert params_for(off_beat)["bpm"] == 120.0
    unlooped = {**PLAIN, "tempo": {**LOOPED["tempo"], "beats": 5, "bar_beats": 3}}
    assert params_for(unlooped) == {"loop": False, "loop_offset": 0, "bpm": 120.0, "beat_count": 5, "bar_beats": 3}
    assert params_for({**LOOPED, "tempo": None})["bpm"] == 0  # absent tempo: Godot's defaults


def test_merge_keeps_uid_and_every_key_trackspec_does_not_own_byte_for_byte():
    res = "res://assets/music/combat/boss.ogg"
    existing = (
        '[remap]\n\nimporter="oggvorbisstr"\ntype="AudioStreamOggVorbis"\nuid="uid://c4kq7xbyw2y5"\n'
        'path="res://.godot/imported/renamed.ogg-0123.oggvorbisstr"\n'
        'metadata={\n"vram_texture": false,\n"note": "two = lines"\n}\n\n'
        '[deps]\n\nsource_file="res://assets/music/combat/boss.ogg"\n'
        'dest_files=["res://.godot/imported/renamed.ogg-0123.oggvorbisstr"]\n\n'
        "[params]\n\nloop=false\nloop_offset=0\nbpm=0\nbeat_count=0\nbar_beats=4\nedit/volume_db=-3.25\n"
        "; a comment Godot would drop, kept\n\n[custom]\nanswer=42\n"
    )
    merged = merge_sidecar(existing, res, IMPORTERS["ogg"], params_for(LOOPED))
    changed = {"loop=false", "loop_offset=0", "bpm=0", "beat_count=0"}
    assert [line for line in existing.splitlines() if line not in changed] == [
        line
        for line in merged.splitlines()
        if line not in {"loop=true", "loop_offset=0.5", "bpm=120.0", "beat_count=4"}
    ]
    parsed = read_sidecar(merged)
    assert parsed["remap"]["uid"] == "uid://c4kq7xbyw2y5"  # scenes keep resolving the track
    assert parsed["params"]["loop"] is True and parsed["params"]["loop_offset"] == 0.5
    assert parsed["params"]["edit/volume_db"] == -3.25 and parsed["custom"] == {"answer": 42}
    assert merge_sidecar(merged, res, IMPORTERS["ogg"], params_for(LOOPED)) == merged  # idempotent
    # A sidecar Godot wrote for the defaults ("loop_offset=0" vs 0.0) is not rewritten for nothing.
    plain = new_sidecar(res, IMPORTERS["ogg"], params_for(PLAIN))
    assert merge_sidecar(plain, res, IMPORTERS["ogg"], params_for(PLAIN)) == plain


def test_merge_completes_a_partial_sidecar():
    res = "res://m/x.mp3"
    merged = merge_sidecar('[remap]\n\nimporter="keep"\n', res, IMPORTERS["mp3"], params_for(PLAIN))
    parsed = ini(merged)
    assert parsed["remap"] == {
        "importer": "mp3",
        "type": "AudioStreamMP3",
        "uid": stable_uid(res),
        "path": imported_path(res, IMPORTERS["mp3"]),
    }
    assert parsed["deps"]["source_file"] == res and parsed["params"]["loop"] is False


# ------------------------------------------------------------------------ a Godot game, end to end
BOSS = """\
prompt = "boss battle, driving drums"
duration = 1.0
seed = 3
genre = "combat"

[output]
loop = true
loop_crossfade = 0.2
"""


def fresh_repo(tmp_path: Path, engine: str, tiny_model: Path) -> GameRepo:
    """A folder made a game repo by the real `trackspec init --engine ENGINE`."""
    root = tmp_path / "game"
    root.mkdir()
    env = {
        **os.environ,
        "TRACKSPEC_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(PROJECT_ROOT),
        "TRACKSPEC_MODEL": str(tiny_model),
    }
    subprocess.run(
        [sys.executable, "-m", "importer", "init", "--engine", engine],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    return GameRepo(root, tmp_path / "cache", env)


def test_a_spec_anywhere_builds_with_its_godot_sidecar_kept_in_step(tmp_path, tiny_model):
    repo = fresh_repo(tmp_path, "godot", tiny_model)
    (repo.root / "project.godot").write_text("config_version=5\n")
    (repo.root / ".gitignore").write_text(".godot/\nexports/\n")
    boss = repo.root / "music" / "boss.trackspec"
    boss.parent.mkdir()
    boss.write_text(BOSS)
    # Specs in ignored trees are never read: these would fail the build if they were.
    for ignored in ("exports/stale.trackspec", ".godot/cache.trackspec"):
        (repo.root / ignored).parent.mkdir(parents=True, exist_ok=True)
        (repo.root / ignored).write_text("this is not TOML [\n")

    check = repo.run("build", "--check", "--json", check_rc=1)
    assert [(t["name"], t["spec"]) for t in check.json()["tracks"]] == [("boss", "music/boss.trackspec")]
    repo.run("build", check_rc=0)
    index = assert_index_matches_disk(repo)
    entry = index["tracks"]["boss"]
    assert set(entry["files"]) == {"ogg"}  # the godot preset
    ogg = repo.root / entry["files"]["ogg"]["path"]
    sidecar = ogg.with_name(ogg.name + ".import")
    parsed = ini(sidecar.read_text())
    assert parsed["remap"]["importer"] == "oggvorbisstr"
    assert parsed["deps"]["source_file"] == "res://" + entry["files"]["ogg"]["path"]
    assert parsed["params"]["loop"] is True
    assert parsed["params"]["loop_offset"] == entry["loop"]["start_seconds"]

    # Godot imported it (new uid, a key of its own); a rebuild of a changed track keeps both.
    text = sidecar.read_text().replace(parsed["remap"]["uid"], "uid://b8q3c0godot1")
    sidecar.write_text(text.replace("bar_beats=4\n", "bar_beats=4\nedit/volume_db=-1.5\n"))
    boss.write_text(BOSS.replace("seed = 3", "seed = 4"))
    repo.run("build", check_rc=0)
    again = ini(sidecar.read_text())
    assert again["remap"]["uid"] == "uid://b8q3c0godot1"
    assert again["params"]["edit/volume_db"] == -1.5 and again["params"]["loop"] is True
    assert again["params"]["loop_offset"] == repo.index()["tracks"]["boss"]["loop"]["start_seconds"]

    # The spec goes: the track, its file, its sidecar and the emptied genre folder go.
    boss.unlink()
    repo.run("build", check_rc=0)
    assert repo.index()["tracks"] == {}
    assert not ogg.exists() and not sidecar.exists() and not ogg.parent.exists()


def test_sync_writes_only_inside_a_godot_project(tmp_path):
    from importer import engines
    from importer.config import load_config

    root = tmp_path / "game"
    ogg = root / "assets/music/combat/boss.ogg"
    ogg.parent.mkdir(parents=True)
    ogg.write_bytes(b"OggS")
    (root / "trackspec.toml").write_text("")
    index = {
        "schema_version": 1,
        "tracks": {
            "boss": {
                **LOOPED,
                "files": {"ogg": {"path": "assets/music/combat/boss.ogg", "sha256": "0" * 64, "bytes": 4}},
            }
        },
    }
    sidecar = ogg.with_name("boss.ogg.import")
    assert engines.sync(load_config(root), index).written == [] and not sidecar.exists()  # no project.godot
    (root / "godot").mkdir()
    (root / "godot" / "project.godot").write_text("")
    (root / "trackspec.toml").write_text('[engine]\ngodot = "godot"\n')  # a project that does not hold the assets
    assert engines.sync(load_config(root), index).written == [] and not sidecar.exists()
    (root / "trackspec.toml").write_text("")
    (root / "project.godot").write_text("")
    result = engines.sync(load_config(root), index)
    assert result.written == [sidecar] and ini(sidecar.read_text())["params"]["loop"] is True
    assert engines.sync(load_config(root), index).written == []  # nothing changed: nothing written
    # A file still on disk keeps its sidecar when unlisted (it is not trackspec's to delete) ...
    assert engines.sync(load_config(root), {"tracks": {}}, index).removed == []
    ogg.unlink()  # ... and loses it once the build has deleted it
    assert engines.sync(load_config(root), {"tracks": {}}, index).removed == [sidecar]
    assert not sidecar.exists() and not sidecar.parent.exists()


# ------------------------------------------------------------------------------- Unity and Unreal
def test_unity_scripts_parse_and_apply_streaming_vorbis_to_listed_files():
    tree_sitter = pytest.importorskip("tree_sitter")
    grammar = pytest.importorskip("tree_sitter_c_sharp")
    parser = tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    post = (HOOKS / "unity/Editor/TrackspecAudioPostprocessor.cs").read_text()
    reader = (HOOKS / "unity/Runtime/TrackspecIndex.cs").read_text()
    for source in (post, reader):
        assert not parser.parse(source.encode()).root_node.has_error
    for needle in (
        ": AssetPostprocessor",
        "void OnPreprocessAudio()",
        "public override uint GetVersion()",
        "AudioClipLoadType.Streaming",
        "AudioCompressionFormat.Vorbis",
        "preloadAudioData = false",
        "ListedTrack(assetPath)",
    ):
        assert needle in post, needle
    for needle in ("public static TrackspecIndex Parse(", "public string ClipPath(", "start_seconds"):
        assert needle in reader, needle


class _Recorder:
    """A stand-in for Unreal's `unreal` module (Unreal does not run here): it records the import
    tasks, the properties set and the calls made, and "imports" each task as a SoundWave."""

    def __init__(self, project: Path):
        recorder = self
        self.calls: list[tuple] = []
        self.assets: dict[str, object] = {}

        class Object:
            def __init__(self):
                self.props: dict = {}

            def set_editor_property(self, name, value):
                self.props[name] = value
                recorder.calls.append(("set", type(self).__name__, name, value))

            def get_editor_property(self, name):
                return self.props.get(name)

        class SoundWave(Object):
            pass

        class AssetImportTask(Object):
            pass

        class AssetTools:
            def import_asset_tasks(self, tasks):
                recorder.calls.append(("import_asset_tasks", len(tasks)))
                for task in tasks:
                    assert Path(task.props["filename"]).is_file(), task.props["filename"]
                    path = f"{task.props['destination_path']}/{task.props['destination_name']}"
                    recorder.assets[path] = SoundWave()
                    task.props["imported_object_paths"] = [path]

        class EditorAssetLibrary:
            @staticmethod
            def does_asset_exist(path):
                return path in recorder.assets

            @staticmethod
            def load_asset(path):
                return recorder.assets.get(path)

            @staticmethod
            def save_loaded_asset(asset, only_if_dirty=True):
                recorder.calls.append(("save", next(k for k, v in recorder.assets.items() if v is asset)))
                return True

            @staticmethod
            def delete_asset(path):
                recorder.calls.append(("delete", path))
                return recorder.assets.pop(path, None) is not None

        self.module = types.SimpleNamespace(
            AssetImportTask=AssetImportTask,
            SoundWave=SoundWave,
            EditorAssetLibrary=EditorAssetLibrary,
            AssetToolsHelpers=types.SimpleNamespace(get_asset_tools=lambda: AssetTools()),
            Paths=types.SimpleNamespace(
                project_dir=lambda: str(project) + "/", convert_relative_path_to_full=lambda p: p
            ),
            log=lambda m: recorder.calls.append(("log", m)),
            log_warning=lambda m: recorder.calls.append(("warning", m)),
            log_error=lambda m: recorder.calls.append(("error", m)),
        )


def _load_unreal_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("trackspec_import", HOOKS / "unreal/trackspec_import.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unreal_script_imports_every_indexed_file_and_sets_looping(tmp_path):
    root = tmp_path / "game"
    files = {"boss": ("combat", {"start": 0, "length": 10, "start_seconds": 0.0}), "menu": ("calm", None)}
    tracks = {}
    for name, (genre, loop) in files.items():
        path = root / "Audio/Music" / genre / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF" + name.encode())
        tracks[name] = {
            "genre": genre,
            "loop": loop,
            "files": {"wav": {"path": f"Audio/Music/{genre}/{name}.wav", "sha256": name * 4}},
        }
    (root / "trackspec.toml").write_text("")
    index = root / "Audio/Music/index.json"
    index.write_text(json.dumps({"schema_version": 1, "tracks": tracks}))
    script = _load_unreal_script()
    unreal = _Recorder(root)

    assert script.main([f"--index {index}"], unreal.module) == 2  # one string, as -script="... --index X" gives
    tasks = [c for c in unreal.calls if c[0] == "set" and c[1] == "AssetImportTask"]
    props = [dict(p) for p in _task_props(tasks)]
    assert [p["destination_path"] + "/" + p["destination_name"] for p in props] == [
        "/Game/Music/combat/boss",
        "/Game/Music/calm/menu",
    ]
    for p in props:
        assert p["automated"] is True and p["replace_existing"] is True and p["save"] is True
        assert Path(p["filename"]).is_file()
    assert [c for c in unreal.calls if c[:3] == ("set", "SoundWave", "looping")] == [
        ("set", "SoundWave", "looping", True),
        ("set", "SoundWave", "looping", False),
    ]  # boss loops, menu not
    assert ("save", "/Game/Music/combat/boss") in unreal.calls and ("save", "/Game/Music/calm/menu") in unreal.calls

    # Unchanged files are not imported again; a track gone from the index loses its asset.
    unreal.calls.clear()
    del tracks["menu"]
    index.write_text(json.dumps({"schema_version": 1, "tracks": tracks}))
    assert script.main(["--index", str(index)], unreal.module) == 0
    assert ("delete", "/Game/Music/calm/menu") in unreal.calls
    assert not any(c[0] == "import_asset_tasks" for c in unreal.calls)
    assert list(unreal.assets) == ["/Game/Music/combat/boss"]


def _task_props(calls: list[tuple]) -> list[list[tuple]]:
    """Split the recorded AssetImportTask property sets into one list per task (each starts with filename)."""
    tasks: list[list[tuple]] = []
    for _, _, prop, value in calls:
        if prop == "filename":
            tasks.append([])
        tasks[-1].append((prop, value))
    return tasks
