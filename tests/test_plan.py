"""The decision table of ``plan.plan_build``, driven directly over a virtual file system.

As ninja's build tests drive its planner: no subprocess, no ffmpeg, no model. The cache
and the published files are stand-ins (``VirtualCache``, ``VirtualOutputs``) that answer
what the plan asks of them (presence, digests, last inputs); specs are parsed for real
and their keys computed by ``keys``, so every action and every reason is the planner's own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from importer.config import load_config, rel
from importer.index import AUDIO_FACTS, empty_index, index_entry, output_paths
from importer.keys import track_keys
from importer.model_ref import ModelRef
from importer.plan import plan_build
from importer.spec import parse_spec
from importer.tracks import LoadedTrack, SpecFailure

MODEL = ModelRef("facebook/musicgen-small", "main", {"hub": "facebook/musicgen-small", "revision": "main"}, False)
FACTS = {
    "sample_rate": 44100,
    "channels": 1,
    "samples": 44100,
    "duration": 1.0,
    "loop": None,
    "loudness": {"target": -16.0},
    "tempo": None,
}


class VirtualCache:
    """Which cache entries exist, and the inputs each was made from."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}

    def has(self, kind: str, key: str) -> bool:
        return (kind, key) in self.entries

    def peek_info(self, kind: str, key: str) -> dict[str, Any]:
        return self.entries.get((kind, key), {})


class VirtualOutputs:
    """Published files by path (their sha256), and the inputs each track was last built from."""

    def __init__(self) -> None:
        self.files: dict[Path, str] = {}
        self.tracks: dict[str, dict[str, Any]] = {}

    def digest(self, path: Path) -> str | None:
        return self.files.get(path)


@pytest.fixture
def world(tmp_path):
    (tmp_path / "trackspec.toml").write_text('specs = ["specs"]\n')
    (tmp_path / "specs").mkdir()
    return World(load_config(tmp_path))


class World:
    def __init__(self, config):
        self.config = config
        self.cache = VirtualCache()
        self.outputs = VirtualOutputs()
        self.index = empty_index()

    def track(self, name: str = "calm", body: str = "", file: str | None = None) -> LoadedTrack:
        path = self.config.root / "specs" / f"{file or name}.trackspec"
        path.write_text(f'name = "{name}"\nprompt = "calm pad"\nduration = 1\nseed = 7\n{body}')
        spec = parse_spec(path, self.config.spec_defaults, self.config.max_duration)
        return LoadedTrack(spec, MODEL, track_keys(spec, MODEL), "CC-BY-NC-4.0")

    def publish(self, track: LoadedTrack, remember: bool = True) -> dict[str, Any]:
        """The state after a build of ``track``: files on disk, index entry, remembered inputs."""
        files = {}
        for fmt, path in output_paths(self.config, track.spec).items():
            digest = f"{fmt}-{track.keys.render}"
            self.outputs.files[path] = digest
            files[fmt] = {"path": rel(self.config, path), "sha256": digest, "bytes": 10}
        entry = index_entry(self.config, track, files, FACTS)
        self.index["tracks"][track.spec.name] = entry
        if remember:
            self.outputs.tracks[track.spec.name] = {
                "generation_inputs": track.keys.generation_inputs,
                "render_inputs": track.keys.render_inputs,
            }
        return entry

    def plan(self, *tracks: LoadedTrack, failures: list[SpecFailure] | None = None, others=()):
        return plan_build(self.config, list(tracks), failures or [], self.index, self.cache, self.outputs, others)

    def one(self, track: LoadedTrack):
        plan = self.plan(track)
        assert len(plan.tracks) == 1 and not plan.removals
        return plan.tracks[0].action, plan.tracks[0].reasons


def test_new_track_generates(world):
    assert world.one(world.track()) == ("generate", ["new"])


def test_new_track_with_raw_audio_in_the_cache_encodes(world):
    track = world.track()
    world.cache.entries[("raw", track.keys.generation)] = {}
    assert world.one(track) == ("encode", ["new"])


def test_new_track_with_its_render_in_the_cache_restores(world):
    track = world.track()
    world.cache.entries[("render", track.keys.render)] = {}
    world.cache.entries[("raw", track.keys.generation)] = {}
    assert world.one(track) == ("restore", ["new"])


def test_published_and_unchanged_is_fresh(world):
    track = world.track()
    world.publish(track)
    assert world.one(track) == ("fresh", [])


def test_meta_only_change_rewrites_the_index_entry(world):
    world.publish(world.track())
    edited = world.track(body="[meta]\nbpm = 90\n")
    assert world.one(edited) == ("index", ["index entry changed (meta, spec path or model name)"])


def test_prompt_change_names_the_field_and_generates(world):
    world.publish(world.track())
    edited = world.track().spec
    edited = dataclasses.replace(edited, prompt="epic drums")
    track = LoadedTrack(edited, MODEL, track_keys(edited, MODEL))
    assert world.one(track) == ("generate", ["prompt changed"])


def test_derived_seed_follows_the_other_change_silently(world):
    path = world.config.root / "specs" / "calm.trackspec"
    path.write_text('name = "calm"\nprompt = "calm pad"\nduration = 1\n')
    spec = parse_spec(path, world.config.spec_defaults, world.config.max_duration)
    world.publish(LoadedTrack(spec, MODEL, track_keys(spec, MODEL)))
    spec = dataclasses.replace(spec, prompt="epic drums")
    assert world.one(LoadedTrack(spec, MODEL, track_keys(spec, MODEL))) == ("generate", ["prompt changed"])


def test_render_setting_change_reencodes_from_cached_raw_audio(world):
    world.publish(world.track())
    edited = world.track(body="[output]\nogg_quality = 3\n")
    world.cache.entries[("raw", edited.keys.generation)] = {}
    assert world.one(edited) == ("encode", ["ogg_quality changed"])


def test_previous_inputs_come_from_the_cache_when_the_state_forgot(world):
    old = world.track()
    world.publish(old, remember=False)
    world.cache.entries[("render", old.keys.render)] = {"inputs": old.keys.render_inputs}
    edited = world.track(body="[output]\nogg_quality = 3\n")
    assert world.one(edited) == ("generate", ["ogg_quality changed"])


def test_unknown_previous_inputs_say_settings_changed(world):
    world.publish(world.track(), remember=False)
    assert world.one(world.track(body="[output]\nogg_quality = 3\n")) == ("generate", ["settings changed"])


def test_incomplete_index_entry_is_rebuilt(world):
    track = world.track()
    del world.publish(track)[AUDIO_FACTS[0]]
    assert world.one(track) == ("generate", ["index entry incomplete"])


@pytest.mark.parametrize(
    "fmt, damage, reason",
    [
        ("ogg", None, "output missing (ogg)"),
        ("mp3", "something else", "output modified (mp3)"),
    ],
)
def test_missing_or_modified_output_restores_from_the_cache(world, fmt, damage, reason):
    track = world.track()
    world.publish(track)
    world.cache.entries[("render", track.keys.render)] = {}
    path = output_paths(world.config, track.spec)[fmt]
    if damage is None:
        del world.outputs.files[path]
    else:
        world.outputs.files[path] = damage
    assert world.one(track) == ("restore", [reason])


def test_both_outputs_damaged_lists_both_reasons(world):
    track = world.track()
    world.publish(track)
    paths = output_paths(world.config, track.spec)
    del world.outputs.files[paths["mp3"]]
    world.outputs.files[paths["ogg"]] = "x"
    assert world.one(track) == ("generate", ["output missing (mp3)", "output modified (ogg)"])


def test_index_paths_not_where_the_spec_puts_them(world):
    track = world.track()
    entry = world.publish(track)
    for info in entry["files"].values():
        info["path"] = info["path"].replace("synthwave", "elsewhere")
    assert world.one(track) == ("generate", ["output path changed (genre or assets folder)"])


def test_genre_change_restores_from_the_published_files(world):
    old = world.track()
    world.publish(old)
    moved = world.track(body='genre = "ambient"\n')
    assert moved.keys.render == old.keys.render  # the folder is no part of what the files are
    tp = world.plan(moved).tracks[0]
    assert (tp.action, tp.reasons) == ("restore", ["output path changed (genre or assets folder)"])
    assert tp.donor is world.index["tracks"]["calm"]


def test_donor_needs_intact_files(world):
    old = world.track()
    world.publish(old)
    world.outputs.files[output_paths(world.config, old.spec)["ogg"]] = "tampered"
    moved = world.track(body='genre = "ambient"\n')
    tp = world.plan(moved).tracks[0]
    assert (tp.action, tp.donor) == ("generate", None)


def test_deleted_spec_removes_its_track(world):
    world.publish(world.track())
    plan = world.plan()
    assert [(r.name, r.reason) for r in plan.removals] == [("calm", "spec deleted")]


def test_renamed_track_removes_the_old_name(world):
    world.publish(world.track())
    renamed = world.track(name="calmer", file="calm")
    plan = world.plan(renamed)
    assert [(r.name, r.reason) for r in plan.removals] == [("calm", "spec renamed the track")]
    tp = plan.tracks[0]  # the old name's files are this render (tags are written at publication)
    assert (tp.name, tp.action, tp.reasons, tp.donor) == ("calmer", "restore", ["new"], world.index["tracks"]["calm"])


def test_a_failing_spec_keeps_its_entry(world):
    track = world.track()
    world.publish(track)
    failure = SpecFailure(track.spec.path, "broken")
    plan = world.plan(failures=[failure])
    assert plan.removals == [] and plan.failures == [failure] and plan.tracks == []


def test_tracks_not_planned_again_still_claim_their_names(world):
    calm, boss = world.track(), world.track(name="boss")
    world.publish(calm)
    world.publish(boss)
    plan = world.plan(boss, others=[calm])
    assert [tp.name for tp in plan.tracks] == ["boss"] and plan.removals == []
    assert plan.tracks[0].action == "fresh"


def test_the_plan_reads_no_file(world, monkeypatch):
    """Everything on disk comes through the views: the planner opens and stats nothing."""
    track = world.track()
    world.publish(track)
    edited = world.track(body="[output]\nogg_quality = 3\n")

    def refuse(*_args, **_kwargs):
        raise AssertionError("the planner touched the file system")

    monkeypatch.setattr(Path, "stat", refuse)
    monkeypatch.setattr(Path, "is_file", refuse)
    monkeypatch.setattr(Path, "exists", refuse)
    monkeypatch.setattr("builtins.open", refuse)
    plan = world.plan(edited)
    assert plan.tracks[0].action == "generate"


def chained(world, main_body: str = "", boss_body: str = "") -> tuple[LoadedTrack, LoadedTrack]:
    """``main`` and ``boss``, which continues main (its key holds main's, as ``link_chains`` puts it)."""
    from importer.keys import continuation_inputs
    from importer.tracks import link_chains

    main = world.track("main", main_body)
    boss = world.track("boss", f'[generation]\ncontinue_from = "track:main"\n{boss_body}')
    continued = continuation_inputs(boss.spec, {"track": "main", "generation": None})
    boss = dataclasses.replace(boss, keys=track_keys(boss.spec, MODEL, continued))
    loaded, failures = link_chains([main, boss], [])
    assert not failures
    return loaded[0], loaded[1]


def test_a_source_whose_raw_audio_is_gone_is_generated_again_for_the_track_continuing_it(world):
    main, boss = chained(world)
    world.publish(main)
    world.cache.entries[("render", main.keys.render)] = {}  # restored from a team cache: no raw audio
    plan = world.plan(main, boss)
    actions = {tp.name: (tp.action, tp.reasons, tp.raw_wanted) for tp in plan.tracks}
    assert actions == {
        "main": ("generate", ["boss continues its generated audio, which is not in the cache"], True),
        "boss": ("generate", ["new"], False),
    }
    # The daemon plans only boss: main, up to date, is planned after all.
    plan = world.plan(boss, others=[main])
    assert [(tp.name, tp.action) for tp in plan.tracks] == [("boss", "generate"), ("main", "generate")]
    # With main's raw audio cached, nothing more than boss is made.
    world.cache.entries[("raw", main.keys.generation)] = {}
    assert [(tp.name, tp.action) for tp in world.plan(main, boss).tracks] == [("main", "fresh"), ("boss", "generate")]
