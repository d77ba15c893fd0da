"""Game-ready audio end to end: loudness profiles, seamless loops, loop and provenance tags,
channels and the licence gate. Every number is measured on the decoded published files,
with meters independent of the product's (pyloudnorm; scipy's polyphase FIR for true peak).
"""

from __future__ import annotations

import math
import shutil

import mutagen
import numpy as np
import pyloudnorm
import pytest
import scipy.signal
from helpers import assert_index_matches_disk
from test_loop import music_like
from test_loudness import MUSICGEN_RATE, chords, with_hits

import importer
from importer.audio import resample
from importer.cache import LocalCache
from importer.encode import EncodeSettings, decode_pcm
from importer.licences import declare_license
from importer.loop import seam_check
from importer.model_ref import directory_digest
from importer.output_settings import PROFILES
from importer.render import RenderSettings, render_raw

RATE = 44_100


def lufs(audio: np.ndarray) -> float:
    return pyloudnorm.Meter(RATE).integrated_loudness(audio.T.astype(np.float64))


def true_peak_db(audio: np.ndarray) -> float:
    return 20 * math.log10(np.abs(scipy.signal.resample_poly(audio.astype(np.float64), 8, 1, axis=1)).max())


def model_digest(directory) -> str:
    from importer.state import State

    return directory_digest(directory, State(directory.parent / "no-state.json"))


def raw_entry(cache: LocalCache, audio: np.ndarray, key: str):
    """A raw cache entry holding ``audio`` at MusicGen's rate, as generation stores it."""
    staging = cache.staging_dir()
    path = staging / "audio.f32"
    np.ascontiguousarray(audio, dtype="<f4").tofile(path)
    info = {"sample_rate": MUSICGEN_RATE, "channels": audio.shape[0], "samples": audio.shape[1]}
    entry = cache.put("raw", key, {"audio.f32": path}, info)
    shutil.rmtree(staging, ignore_errors=True)
    return entry


def render(tmp_path, audio: np.ndarray, **settings):
    cache = LocalCache(tmp_path / "cache")
    raw = raw_entry(cache, audio, "0" * 64)
    chosen = RenderSettings(encode=EncodeSettings(("ogg", "mp3"), RATE), **settings)
    entry = render_raw(cache, raw, chosen, "e" * 64, {})
    decoded = {
        fmt: decode_pcm(entry.files[f"audio.{fmt}"], RATE, entry.info["channels"], fmt=fmt) for fmt in ("ogg", "mp3")
    }
    return entry, decoded


# --- loudness through the render chain --------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("signal", ["quiet", "transients"])
def test_each_profile_holds_on_the_decoded_files(tmp_path, profile, signal):
    """Within 0.5 LU of the target and under the -1 dBTP ceiling, in OGG and MP3, also
    where the gain alone would push loud transients far over the ceiling."""
    bed = chords(6.0, MUSICGEN_RATE, 0.05 if signal == "quiet" else 0.1)
    audio = bed if signal == "quiet" else with_hits(bed, MUSICGEN_RATE, seed=7)
    target = PROFILES[profile]
    entry, decoded = render(tmp_path, audio[:2], loudness_target=target, true_peak=-1.0)
    record = entry.info["loudness"]
    for fmt, pcm in decoded.items():
        assert abs(lufs(pcm) - target) <= 0.5, (fmt, lufs(pcm))
        assert true_peak_db(pcm) <= -1.0 + 0.05, (fmt, true_peak_db(pcm))  # 8x FIR vs the 4x meter
        assert abs(record["files"][fmt]["integrated"] - lufs(pcm)) <= 0.15
    if signal == "transients":
        assert record["method"] == "limited"
        source = resample(audio[:2].astype(np.float32), MUSICGEN_RATE, RATE)
        assert true_peak_db(source) + (target - lufs(source)) > -1.0  # plain gain: over the ceiling
    else:
        assert record["method"] == "gain"


def test_loudness_none_leaves_the_level_and_still_measures(tmp_path):
    audio = chords(3.0, MUSICGEN_RATE, 0.05)[:1]
    entry, decoded = render(tmp_path, audio)
    record = entry.info["loudness"]
    assert record["method"] == "none" and record["target"] is None
    assert abs(record["files"]["ogg"]["integrated"] - lufs(decoded["ogg"])) <= 0.15


# --- loops through the render chain -------------------------------------------------------


def test_looped_render_passes_the_seam_check_and_unlooped_fails(tmp_path):
    audio = music_like(2, seconds=4.3)
    raw = np.stack([scipy.signal.resample_poly(ch, 320, 441) for ch in audio]).astype(np.float32)
    looped, decoded = render(tmp_path / "a", raw, loop_crossfade=0.5, loudness_target=-16.0)
    plain, plain_decoded = render(tmp_path / "b", raw, loudness_target=-16.0)
    assert seam_check(decoded["ogg"]).ok
    assert not seam_check(plain_decoded["ogg"]).ok  # the check can fail
    assert looped.info["samples"] == plain.info["samples"] - round(0.5 * RATE)
    assert looped.info["loop"] == {
        "start": 0,
        "length": looped.info["samples"],
        "start_seconds": 0.0,
        "bars": None,
        "bpm": None,
    }


# --- the CLI: index, tags, channels, licences ----------------------------------------------

LOOPED = """\
prompt = "calm synthwave loop"
duration = 5.0
seed = 5

[output]
loop = true
loudness_profile = "mobile"

[meta]
bpm = 120
"""


def test_built_loop_track_has_exact_length_loop_points_and_tags(game_repo, tiny_model):
    game_repo.write_spec("loop", LOOPED)
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    game_repo.run("build", check_rc=0)
    index = assert_index_matches_disk(game_repo)
    track = index["tracks"]["loop"]
    crossfade = round(4 * 60 / 120 * RATE)  # one bar at 120 BPM
    assert track["samples"] == round(5.0 * RATE) - crossfade
    assert track["loop"] == {"start": 0, "length": track["samples"], "start_seconds": 0.0, "bars": None, "bpm": None}
    assert track["loudness"]["target"] == -18.0 and track["license"] == "CC0-1.0"
    ogg = game_repo.root / track["files"]["ogg"]["path"]
    mp3 = game_repo.root / track["files"]["mp3"]["path"]
    comments = list(mutagen.File(ogg).tags)
    assert comments[:2] == [("LOOPSTART", "0"), ("LOOPLENGTH", str(track["samples"]))]
    expected = {
        "TITLE": "loop",
        "TRACKSPEC_RENDER_KEY": track["keys"]["render"],
        "SEED": "5",
        "MUSICGEN_MODEL": "local:sha256:" + model_digest(tiny_model)[:16],
        "TRACKSPEC_VERSION": importer.__version__,
        "LICENSE": "CC0-1.0",
    }
    ogg_tags = dict(comments)
    assert {k: ogg_tags[k] for k in expected} == expected
    id3 = mutagen.File(mp3).tags
    txxx = {frame.desc: str(frame.text[0]) for frame in id3.getall("TXXX")}
    assert str(id3["TIT2"].text[0]) == "loop"
    assert {k: txxx[k] for k in expected if k != "TITLE"} == {k: v for k, v in expected.items() if k != "TITLE"}
    assert (txxx["LOOPSTART"], txxx["LOOPLENGTH"]) == ("0", str(track["samples"]))


CHANNEL_SPEC = """\
prompt = "stereo pads"
duration = 1.5
seed = 3
{extra}
"""


@pytest.mark.parametrize("model, channels, expected", [("stereo", None, 2), ("mono", 2, 2), ("stereo", 1, 1)])
def test_channels_end_to_end(game_repo, tiny_model, tiny_stereo_model, model, channels, expected):
    extra = f"[output]\nchannels = {channels}\n" if channels else ""
    game_repo.write_spec("pads", CHANNEL_SPEC.format(extra=extra))
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_stereo_model if model == "stereo" else tiny_model)
    game_repo.run("build", check_rc=0)
    track = assert_index_matches_disk(game_repo)["tracks"]["pads"]
    assert track["channels"] == expected and track["samples"] == round(1.5 * RATE)
    pcm = decode_pcm(game_repo.root / track["files"]["ogg"]["path"], RATE, expected)
    assert pcm.shape == (expected, round(1.5 * RATE))
    if model == "mono" and expected == 2:
        assert np.array_equal(pcm[0], pcm[1])  # duplicated, not invented


def test_commercial_build_refuses_non_commercial_weights_unless_allowed(game_repo, tiny_model, tmp_path):
    nc_model = tmp_path / "nc-model"
    shutil.copytree(tiny_model, nc_model)
    declare_license(nc_model, "CC-BY-NC-4.0")
    game_repo.write_spec("calm", CHANNEL_SPEC.format(extra=""))
    game_repo.env["TRACKSPEC_MODEL"] = str(nc_model)
    toml = game_repo.root / "trackspec.toml"
    toml.write_text(toml.read_text() + "commercial = true\n")
    refused = game_repo.run("build", check_rc=1)
    said = refused.stdout + refused.stderr
    assert "CC-BY-NC-4.0" in said and str(nc_model) in said and "allow_noncommercial_models = true" in said
    assert not (game_repo.root / "assets/music/synthwave/calm.ogg").exists()

    toml.write_text(toml.read_text() + "allow_noncommercial_models = true\n")
    game_repo.run("build", check_rc=0)
    assert assert_index_matches_disk(game_repo)["tracks"]["calm"]["license"] == "CC-BY-NC-4.0"
    status = game_repo.run("status", check_rc=0)
    assert "CC-BY-NC-4.0" in status.stdout


def test_commercial_gate_knows_metas_weights_without_network(game_repo):
    """The licence is decided at planning, so even `build --check` (no torch, no download)
    refuses facebook/musicgen-* in a commercial project."""
    game_repo.write_spec("calm", CHANNEL_SPEC.format(extra='[generation]\nmodel = "facebook/musicgen-small"\n'))
    toml = game_repo.root / "trackspec.toml"
    toml.write_text(toml.read_text() + "commercial = true\n")
    result = game_repo.run("build", "--check", check_rc=1)
    said = result.stdout + result.stderr
    assert "facebook/musicgen-small" in said and "CC-BY-NC-4.0" in said
    assert "torch" not in result.imported
