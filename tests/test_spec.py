"""Spec and config validation: every error names file, line, column and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from importer.config import load_config
from importer.errors import ConfigError, SpecError
from importer.spec import builtin_defaults, parse_spec
from importer.state import State
from importer.tracks import load_tracks

GOOD = """\
prompt = "calm synthwave"
duration = 3

[generation]
temperature = 1.1
top_k = 250
top_p = 0.0

[output]
formats = ["ogg", "mp3"]

[meta]
bpm = 90
"""


def write(tmp_path: Path, text: str, name: str = "track.trackspec") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def parse(path: Path):
    return parse_spec(path, builtin_defaults(), max_duration=300.0)


def error_of(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(path)
    return info.value


def test_good_spec_gets_defaults(tmp_path):
    spec = parse(write(tmp_path, GOOD, "calm_one.trackspec"))
    assert spec.name == "calm_one"
    assert spec.genre == "synthwave"
    assert spec.duration == 3.0 and isinstance(spec.duration, float)
    assert (spec.temperature, spec.top_k, spec.top_p, spec.guidance_scale) == (1.1, 250, 0.0, 3.0)
    assert spec.model == "facebook/musicgen-medium"
    assert spec.formats == ("ogg", "mp3") and spec.sample_rate == 44100
    assert (spec.ogg_quality, spec.mp3_quality) == (6.0, 4)
    assert spec.seed is None and spec.meta == {"bpm": 90}
    assert spec.window == 30.0 and spec.window_stride == 18.0


def test_syntax_error_has_line_and_column(tmp_path):
    path = write(tmp_path, 'prompt = "x"\nduration = 3\nseed = = 4\n')
    err = error_of(path)
    assert str(err).startswith(f"{path}:3:")
    assert "TOML syntax error" in str(err)


def test_unterminated_string_points_at_the_end(tmp_path):
    path = write(tmp_path, 'duration = 3\nprompt = "never closed\n')
    err = error_of(path)
    assert str(err).startswith(f"{path}:2") and "syntax" in str(err)


def test_unknown_key_suggests_the_right_one(tmp_path):
    path = write(tmp_path, GOOD.replace("temperature = 1.1", "temprature = 1.1"))
    err = error_of(path)
    assert str(err) == f"{path}:5:1: generation.temprature: unknown key (did you mean 'temperature'?)"


def test_unknown_top_level_key_and_table(tmp_path):
    err = error_of(write(tmp_path, GOOD + "\n[outptu]\nformats = ['ogg']\n"))
    assert ":15:1: outptu: unknown key (did you mean 'output'?)" in str(err)


def test_wrong_type_names_field_and_type(tmp_path):
    path = write(tmp_path, GOOD.replace("duration = 3", 'duration = "long"'))
    err = error_of(path)
    assert str(err) == f"{path}:2:1: duration: must be a number, got a string"


def test_integer_field_refuses_float_and_bool(tmp_path):
    err = error_of(write(tmp_path, GOOD.replace("top_k = 250", "top_k = 250.5")))
    assert "generation.top_k: must be an integer" in str(err) and ":6:1:" in str(err)
    err = error_of(write(tmp_path, GOOD.replace("duration = 3", "duration = true")))
    assert "duration: must be a number, got a boolean" in str(err)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("top_p = 1.5", "generation.top_p: 1.5 is out of range; allowed: [0, 1]"),
        ("top_k = 5000", "generation.top_k: 5000 is out of range; allowed: [0, 2048]"),
        ("temperature = -1.0", "generation.temperature: -1.0 is out of range; allowed: [0, 10]"),
        ("temperature = nan", "generation.temperature: must be a finite number, got nan"),
    ],
)
def test_out_of_range_gives_allowed_range(tmp_path, line, expected):
    key = line.split(" =")[0]
    original = next(g for g in GOOD.splitlines() if g.startswith(key)) if key != "temperature" else "temperature = 1.1"
    err = error_of(write(tmp_path, GOOD.replace(original, line)))
    assert expected in str(err)


def test_duration_limits(tmp_path):
    err = error_of(write(tmp_path, GOOD.replace("duration = 3", "duration = 0")))
    assert "duration: 0 is out of range; allowed: (0, inf]" in str(err)
    err = error_of(write(tmp_path, GOOD.replace("duration = 3", "duration = 301")))
    assert "duration: 301 s is out of range; allowed: (0, 300]" in str(err) and ":2:1:" in str(err)


def test_missing_prompt(tmp_path):
    path = write(tmp_path, "duration = 3\n")
    err = error_of(path)
    assert str(err).startswith(f"{path}:1:1: prompt: missing required field")


def test_empty_prompt(tmp_path):
    err = error_of(write(tmp_path, 'prompt = "   "\n'))
    assert "prompt: must not be empty" in str(err)


@pytest.mark.parametrize("name", ["../evil", "a/b", "Upper", "sp ace", "", "nul\u00e9"])
def test_bad_names_are_refused(tmp_path, name):
    path = write(tmp_path, f'name = "{name}"\n' + GOOD)
    err = error_of(path)
    assert str(err).startswith(f"{path}:1:1: name: ") and "is not allowed" in str(err)


def test_bad_file_stem_asks_for_a_name(tmp_path):
    err = error_of(write(tmp_path, GOOD, "My Track.trackspec"))
    assert "name: the file name gives no valid track name" in str(err)


def test_formats_are_checked(tmp_path):
    err = error_of(write(tmp_path, GOOD.replace('["ogg", "mp3"]', '["ogg", "aac"]')))
    assert "output.formats: 'aac' is not a supported format" in str(err)


def test_window_stride_must_be_shorter_than_window(tmp_path):
    err = error_of(write(tmp_path, GOOD.replace("top_p = 0.0", "top_p = 0.0\nwindow = 2.0\nwindow_stride = 2.0")))
    assert "generation.window_stride: 2 s must be shorter than the window (2 s)" in str(err)


def test_prompt_layout_is_not_content(tmp_path):
    one = parse(write(tmp_path, 'prompt = "calm   synthwave"\n', "a.trackspec"))
    two = parse(write(tmp_path, 'prompt = """\ncalm\nsynthwave\n"""\n', "b.trackspec"))
    assert one.prompt == two.prompt == "calm synthwave"


def _repo(tmp_path: Path, config: str) -> Path:
    (tmp_path / "trackspec.toml").write_text(textwrap.dedent(config), encoding="utf-8")
    (tmp_path / "track_specs").mkdir(exist_ok=True)
    return tmp_path


def test_project_defaults_apply_and_spec_wins(tmp_path):
    root = _repo(
        tmp_path,
        """
        specs = ["track_specs"]
        [defaults]
        genre = "ambient"
        [defaults.generation]
        temperature = 0.9
        [defaults.output]
        formats = ["wav"]
    """,
    )
    write(root / "track_specs", 'prompt = "x"\n[generation]\ntemperature = 1.3\n', "a.trackspec")
    config = load_config(root)
    loaded, failures = load_tracks(config, State(tmp_path / "state.json"), "facebook/musicgen-small")
    assert not failures
    spec = loaded[0].spec
    assert (spec.genre, spec.temperature, spec.formats) == ("ambient", 1.3, ("wav",))


def test_config_errors_have_locations(tmp_path):
    root = _repo(tmp_path, 'specs = ["track_specs"]\ndevice = "gpu"\n')
    with pytest.raises(ConfigError) as info:
        load_config(root)
    assert (
        str(info.value)
        == f"{root / 'trackspec.toml'}:2:1: device: 'gpu' is not a device; allowed: 'auto', 'cuda', 'mps', 'cpu'"
    )
    _repo(tmp_path, "[defaults.generation]\ntop_kk = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(root)
    assert ":2:1: defaults.generation.top_kk: unknown key (did you mean 'top_k'?)" in str(info.value)
    _repo(tmp_path, 'assets = "../outside"\n')
    with pytest.raises(ConfigError) as info:
        load_config(root)
    assert "assets: " in str(info.value) and "outside the game repo" in str(info.value)


def test_meta_must_fit_in_json(tmp_path):
    spec = parse(write(tmp_path, GOOD + "released = 2024-01-31\nat = 12:30:00\n"))
    assert spec.meta == {"bpm": 90, "released": "2024-01-31", "at": "12:30:00"}
    path = write(tmp_path, GOOD.replace("bpm = 90", "bpm = nan"))
    err = error_of(path)
    assert str(err).startswith(f"{path}:13:1: meta.bpm: nan cannot be stored in the JSON index")


def test_duplicate_names_fail_both_and_name_both_files(tmp_path):
    root = _repo(tmp_path, 'specs = ["track_specs"]\n')
    write(root / "track_specs", '# first\nname = "same"\nprompt = "x"\n', "a.trackspec")
    write(root / "track_specs", 'name = "same"\nprompt = "y"\n', "b.trackspec")
    write(root / "track_specs", 'prompt = "z"\n', "c.trackspec")
    loaded, failures = load_tracks(load_config(root), State(tmp_path / "s.json"), "facebook/musicgen-small")
    assert [t.spec.name for t in loaded] == ["c"]
    assert len(failures) == 2
    for failure in failures:
        assert "track name 'same' is claimed by track_specs/a.trackspec and track_specs/b.trackspec" in failure.message
        line = 2 if failure.path.name == "a.trackspec" else 1
        assert failure.message.startswith(f"{failure.path}:{line}:1: name:")
