"""Keys: what changes them and what must not."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from importer.keys import track_keys
from importer.model_ref import resolve_model
from importer.spec import builtin_defaults, parse_spec
from importer.state import State

BASE = """\
# a comment
name = "calm"
genre = "synthwave"
description = "for people"
prompt = "calm synthwave, D minor"
duration = 60
seed = 7

[generation]
model = "facebook/musicgen-medium"
temperature = 1.1
top_k = 250
top_p = 0.0
guidance_scale = 3.0

[output]
formats = ["ogg", "mp3"]
sample_rate = 44100
ogg_quality = 6
mp3_quality = 4

[meta]
bpm = 90
key = "D minor"
"""

TABLES_REORDERED = """\
[output]
mp3_quality = 4
ogg_quality = 6
sample_rate = 44100
formats = ["ogg", "mp3"]

[meta]
key = "D minor"
bpm = 90

[generation]
guidance_scale = 3.0
top_p = 0.0
top_k = 250
temperature = 1.1
model = "facebook/musicgen-medium"
"""
# Top-level keys must come before the first table in TOML, so they lead here too.
TABLES_REORDERED = 'seed = 7\nduration = 60\nprompt = "calm synthwave, D minor"\nname = "calm"\n' + TABLES_REORDERED


def keys_of(tmp_path: Path, text: str, name: str = "calm.trackspec"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    spec = parse_spec(path, builtin_defaults(), max_duration=600.0)
    state = State(tmp_path / "state.json")
    model = resolve_model(spec.model, spec.revision, tmp_path, state)
    return track_keys(spec, model)


@pytest.mark.parametrize(
    "variant",
    [
        BASE.replace("[meta]\nbpm = 90", "[meta]\nbpm = 120\nmood = 'tense'"),
        BASE.replace('description = "for people"', 'description = "something else"'),
        BASE.replace("# a comment", "# another comment\n\n\n"),
        BASE.replace("duration = 60", "duration = 60.0"),
        BASE.replace("ogg_quality = 6", "ogg_quality = 6.0"),
        BASE.replace("temperature = 1.1\ntop_k = 250", "top_k = 250\ntemperature   =   1.1  # spaced"),
        BASE.replace('prompt = "calm synthwave, D minor"', 'prompt = """\ncalm synthwave,\n  D minor\n"""'),
        BASE.replace('genre = "synthwave"', 'genre = "ambient"'),
        BASE.replace('name = "calm"', 'name = "renamed"'),
        BASE.replace('formats = ["ogg", "mp3"]', 'formats = ["mp3", "ogg"]'),
        TABLES_REORDERED,
    ],
    ids=[
        "meta",
        "description",
        "comments",
        "60-vs-60.0",
        "6-vs-6.0",
        "key-order",
        "prompt-layout",
        "genre",
        "name",
        "format-order",
        "table-order",
    ],
)
def test_no_key_changes(tmp_path, variant):
    base = keys_of(tmp_path, BASE, "a.trackspec")
    other = keys_of(tmp_path, variant, "b.trackspec")
    assert (other.generation, other.render) == (base.generation, base.render)


@pytest.mark.parametrize(
    "old, new",
    [
        ('prompt = "calm synthwave, D minor"', 'prompt = "calm synthwave, E minor"'),
        ("duration = 60", "duration = 61"),
        ("seed = 7", "seed = 8"),
        ('model = "facebook/musicgen-medium"', 'model = "facebook/musicgen-small"'),
        ('model = "facebook/musicgen-medium"', 'model = "facebook/musicgen-medium"\nrevision = "abc123"'),
        ("temperature = 1.1", "temperature = 1.0"),
        ("top_k = 250", "top_k = 200"),
        ("top_p = 0.0", "top_p = 0.9"),
        ("guidance_scale = 3.0", "guidance_scale = 4.0"),
        ("top_p = 0.0", "top_p = 0.0\nwindow = 20.0"),
        ("top_p = 0.0", "top_p = 0.0\nwindow_stride = 10.0"),
    ],
    ids=[
        "prompt",
        "duration",
        "seed",
        "model",
        "revision",
        "temperature",
        "top_k",
        "top_p",
        "guidance_scale",
        "window",
        "window_stride",
    ],
)
def test_generation_fields_change_both_keys(tmp_path, old, new):
    base = keys_of(tmp_path, BASE, "a.trackspec")
    changed = keys_of(tmp_path, BASE.replace(old, new), "b.trackspec")
    assert changed.generation != base.generation
    assert changed.render != base.render


@pytest.mark.parametrize(
    "old, new",
    [
        ("ogg_quality = 6", "ogg_quality = 5"),
        ("mp3_quality = 4", "mp3_quality = 2"),
        ('formats = ["ogg", "mp3"]', 'formats = ["ogg"]'),
        ('formats = ["ogg", "mp3"]', 'formats = ["ogg", "mp3", "wav"]'),
        ("sample_rate = 44100", "sample_rate = 48000"),
        ("mp3_quality = 4", 'mp3_quality = 4\nloudness_profile = "console"'),
        ("mp3_quality = 4", "mp3_quality = 4\nloudness = -20.0"),
        ("mp3_quality = 4", "mp3_quality = 4\ntrue_peak = -2.0"),
        ("mp3_quality = 4", "mp3_quality = 4\nloop = true"),
        ("mp3_quality = 4", "mp3_quality = 4\nchannels = 2"),
    ],
    ids=[
        "ogg_quality",
        "mp3_quality",
        "drop-format",
        "add-format",
        "sample_rate",
        "loudness_profile",
        "loudness",
        "true_peak",
        "loop",
        "channels",
    ],
)
def test_render_fields_change_only_the_render_key(tmp_path, old, new):
    base = keys_of(tmp_path, BASE, "a.trackspec")
    changed = keys_of(tmp_path, BASE.replace(old, new), "b.trackspec")
    assert changed.generation == base.generation
    assert changed.render != base.render


def test_unused_quality_and_window_change_nothing(tmp_path):
    ogg_only = BASE.replace('formats = ["ogg", "mp3"]', 'formats = ["ogg"]')
    base = keys_of(tmp_path, ogg_only, "a.trackspec")
    other = keys_of(tmp_path, ogg_only.replace("mp3_quality = 4", "mp3_quality = 9"), "b.trackspec")
    assert other.render == base.render
    short = BASE.replace("duration = 60", "duration = 20")
    base = keys_of(tmp_path, short, "c.trackspec")
    other = keys_of(tmp_path, short.replace("top_p = 0.0", "top_p = 0.0\nwindow = 25.0"), "d.trackspec")
    assert other.generation == base.generation  # one window either way


def test_derived_seed_is_stable_and_follows_the_spec(tmp_path):
    no_seed = BASE.replace("seed = 7\n", "")
    first = keys_of(tmp_path, no_seed, "a.trackspec")
    again = keys_of(tmp_path, no_seed.replace("[meta]\nbpm = 90", "[meta]\nbpm = 91"), "b.trackspec")
    other = keys_of(tmp_path, no_seed.replace("D minor", "E minor"), "c.trackspec")
    assert first.seed == again.seed and first.generation == again.generation
    assert other.seed != first.seed
    assert 0 <= first.seed < 2**32


def test_local_model_enters_the_key_by_content_not_path(tmp_path):
    one = tmp_path / "models" / "one"
    one.mkdir(parents=True)
    (one / "config.json").write_text('{"model_type": "musicgen"}')
    (one / "model.safetensors").write_bytes(b"\x00" * 1000)
    two = tmp_path / "elsewhere" / "two"
    shutil.copytree(one, two)
    spec = BASE.replace('model = "facebook/musicgen-medium"', f'model = "{one}"')
    k_one = keys_of(tmp_path, spec, "a.trackspec")
    k_two = keys_of(tmp_path, BASE.replace('model = "facebook/musicgen-medium"', f'model = "{two}"'), "b.trackspec")
    assert k_one.generation == k_two.generation
    (two / "model.safetensors").write_bytes(b"\x01" + b"\x00" * 999)
    k_changed = keys_of(tmp_path, BASE.replace('model = "facebook/musicgen-medium"', f'model = "{two}"'), "c.trackspec")
    assert k_changed.generation != k_one.generation


def test_missing_model_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model("./models/none", "main", tmp_path, State(tmp_path / "s.json"))


def test_window_settings_count_at_the_frame_boundary(tmp_path):
    """10.005 s is 501 frames: windowed by a 10.01 s (500-frame) window, so the stride matters."""
    spec = BASE.replace("duration = 60", "duration = 10.005").replace("top_p = 0.0", "top_p = 0.0\nwindow = 10.01")
    base = keys_of(tmp_path, spec, "a.trackspec")
    other = keys_of(tmp_path, spec.replace("window = 10.01", "window = 10.01\nwindow_stride = 5.0"), "b.trackspec")
    assert other.generation != base.generation


def test_changed_fields_names_the_cause_not_its_consequences():
    from importer.keys import changed_fields

    old = {"duration": 20.0, "prompt": "x"}
    assert changed_fields(old, {"duration": 40.0, "prompt": "x", "window": 30.0, "window_stride": 18.0}) == ["duration"]
    assert changed_fields(
        {"formats": ["ogg"], "ogg_quality": 6.0}, {"formats": ["mp3", "ogg"], "ogg_quality": 6.0, "mp3_quality": 4}
    ) == ["formats"]
    assert changed_fields({"a": 1}, {"a": 1, "window": 3.0}) == ["window"]
