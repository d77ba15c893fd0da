"""Model licences: the known table, local declarations and model cards, and the commercial gate."""

from __future__ import annotations

import pytest

from importer.errors import ModelError, TrackspecError
from importer.licences import (
    DECLARATION_FILE,
    UNKNOWN,
    check_commercial,
    declare_license,
    is_commercial,
    license_of,
    normalize,
)


@pytest.mark.parametrize(
    "model",
    [
        "facebook/musicgen-small",
        "facebook/musicgen-medium",
        "facebook/musicgen-large",
        "facebook/musicgen-melody",
        "facebook/musicgen-melody-large",
        "facebook/musicgen-stereo-small",
        "facebook/musicgen-stereo-medium",
        "facebook/musicgen-stereo-large",
        "facebook/musicgen-stereo-melody",
        "facebook/musicgen-stereo-melody-large",
        "Facebook/MusicGen-Small",
        "facebook/musicgen-some-future-checkpoint",
    ],
)
def test_meta_musicgen_weights_are_non_commercial(model):
    assert license_of(model) == "CC-BY-NC-4.0"
    assert not is_commercial(license_of(model))


def test_unknown_hub_model_is_unknown(monkeypatch, tmp_path):
    try:  # an empty cache; nothing is ever downloaded
        from huggingface_hub import constants
    except ImportError:
        pass
    else:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert license_of("someone/not-a-known-model") == UNKNOWN


def test_hub_model_card_in_the_local_cache(monkeypatch, tmp_path):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--finetune"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n")
    assert license_of("someone/finetune") == "CC-BY-4.0"
    assert license_of("someone/finetune", revision="abc123") == "CC-BY-4.0"
    assert license_of("someone/finetune", revision="other") == UNKNOWN


def test_local_declaration_file(tmp_path):
    path = declare_license(tmp_path, "apache-2.0")
    assert path.name == DECLARATION_FILE == "trackspec-model.toml"
    assert license_of(str(tmp_path)) == "Apache-2.0"
    assert is_commercial(license_of(str(tmp_path)))


def test_declaration_wins_over_the_model_card(tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# card\n")
    assert license_of(str(tmp_path)) == "CC-BY-NC-4.0"
    (tmp_path / DECLARATION_FILE).write_text('license = "MIT"\n')
    assert license_of(str(tmp_path)) == "MIT"


@pytest.mark.parametrize(
    "card, expected",
    [
        ("---\nlibrary_name: transformers\nlicense: cc-by-nc-4.0\ntags:\n- musicgen\n---\n", "CC-BY-NC-4.0"),
        ('---\nlicense: "mit"\n---\n', "MIT"),
        ("---\nlicense: openrail\n---\n", "openrail"),
        ("# no front matter\nlicense: mit\n", UNKNOWN),
        ("---\ntags: [a]\n---\nlicense: mit\n", UNKNOWN),  # after the front matter: prose
    ],
)
def test_model_card_front_matter(tmp_path, card, expected):
    (tmp_path / "README.md").write_text(card)
    assert license_of(str(tmp_path)) == expected


def test_local_directory_without_declaration_is_unknown(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert license_of(str(tmp_path)) == UNKNOWN


@pytest.mark.parametrize("content", ['license = ""\n', "license = 3\n", "license = [\n"])
def test_broken_declaration_is_a_model_error(tmp_path, content):
    (tmp_path / DECLARATION_FILE).write_text(content)
    with pytest.raises(ModelError, match=DECLARATION_FILE):
        license_of(str(tmp_path))


@pytest.mark.parametrize(
    "license_id, ok",
    [
        ("MIT", True),
        ("Apache-2.0", True),
        ("apache-2.0", True),
        ("CC-BY-4.0", True),
        ("CC0-1.0", True),
        ("cc0-1.0", True),
        ("CC-BY-NC-4.0", False),
        ("cc-by-nc-sa-4.0", False),
        ("CC-BY-NC-ND-4.0", False),
        ("openrail", False),
        ("other", False),
        (UNKNOWN, False),
        ("", False),
    ],
)
def test_is_commercial(license_id, ok):
    assert is_commercial(license_id) is ok


def test_normalize():
    assert normalize(" cc-by-nc-4.0 ") == "CC-BY-NC-4.0"
    assert normalize("'MIT'") == "MIT"
    assert normalize("") == UNKNOWN
    assert normalize("My-Own-Licence") == "My-Own-Licence"


def test_gate_refuses_non_commercial_with_a_clear_message():
    with pytest.raises(ModelError) as info:
        check_commercial("facebook/musicgen-medium", "CC-BY-NC-4.0", allow_noncommercial=False)
    message = str(info.value)
    assert isinstance(info.value, TrackspecError)  # reported as a track failure
    for part in (
        "facebook/musicgen-medium",
        "CC-BY-NC-4.0",
        "commercial = true",
        "allow_noncommercial_models = true",
        "trackspec.toml",
    ):
        assert part in message


def test_gate_unknown_licence_says_how_to_declare_it():
    with pytest.raises(ModelError, match="licence is unknown.*trackspec-model.toml.*allow_noncommercial_models"):
        check_commercial("/models/mine", UNKNOWN, allow_noncommercial=False)


def test_gate_passes_commercial_licences_and_the_override():
    check_commercial("/models/mine", "Apache-2.0", allow_noncommercial=False)
    check_commercial("facebook/musicgen-medium", "CC-BY-NC-4.0", allow_noncommercial=True)
    check_commercial("/models/mine", UNKNOWN, allow_noncommercial=True)
