"""Measured tempo and bar-aligned loops, against ground truth synthesised here.

Click tracks and a simple drum pattern at known tempos (70-170 BPM, 92.5 among them), a first
downbeat away from 0 s, with noise and a pad underneath: the analysis must find the tempo
within 0.5 BPM and the first downbeat within 20 ms. Through the render chain and in the
decoded OGG and MP3: the loop is the asked number of whole bars (within 1 ms), LOOPSTART is
the chosen downbeat, the seam is the track's own step and the beat grid runs on across it.
Through the CLI (synthetic audio in the cache as the raw entry of the track's generation key,
so the build renders it in place of MusicGen's): the origin track, the fallback on noise, and
a loop_bars edit that re-renders without generating.
"""

from __future__ import annotations

import json
import shutil

import jsonschema
import numpy as np
import pytest
from gamerepo import PROJECT_ROOT
from helpers import assert_index_matches_disk

from importer.cache import LocalCache
from importer.encode import EncodeSettings, decode_pcm
from importer.keys import track_keys
from importer.loop import seam_check
from importer.model_ref import resolve_model
from importer.render import RenderSettings, render_raw
from importer.spec import builtin_defaults, parse_spec
from importer.state import State
from importer.tags import TrackTags, read_tags
from importer.tempo import analyse

RATE = 44100
RAW_RATE = 32000  # MusicGen's rate: the render resamples, as in a build


def hit(kind: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One percussive sound, 1 ms attack ramp (real drums have one; an instant step would be
    the loudest step of the track wherever it falls)."""
    n = int(0.12 * rate)
    t = np.arange(n) / rate
    ramp = np.minimum(1.0, t / 0.001)
    if kind == "kick":
        return ramp * np.sin(2 * np.pi * (50 + 80 * np.exp(-t / 0.02)) * t) * np.exp(-t / 0.05)
    if kind == "snare":
        return ramp * 0.5 * rng.standard_normal(n) * np.exp(-t / 0.03)
    return ramp * 0.4 * rng.standard_normal(n) * np.exp(-t / 0.008)  # click


def synth(
    bpm: float, first: float, seconds: float, *, drums: bool, rate: int = RATE, bar_beats: int = 4, seed: int = 0
) -> np.ndarray:
    """Mono float32: beats from ``first`` seconds on, ``first`` a downbeat (accented: a kick
    on the click track; kick on 1, half kick on 3, snare on 2 and 4 for drums), over a two-note
    pad and white noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    y = 0.08 * (np.sin(2 * np.pi * 110 * t) + np.sin(2 * np.pi * 164.8 * t)) + 0.02 * rng.standard_normal(n)
    k = 0
    while (at := first + k * 60.0 / bpm) < seconds - 0.15:
        beat = k % bar_beats
        if drums:
            sound = (
                hit("kick", rate, rng)
                if beat == 0
                else 0.5 * hit("kick", rate, rng)
                if beat == 2
                else hit("snare", rate, rng)
            )
        else:
            sound = hit("kick", rate, rng) + hit("click", rate, rng) if beat == 0 else hit("click", rate, rng)
        s = round(at * rate)
        y[s : s + sound.size] += sound[: n - s]
        k += 1
    return (0.5 * y).astype(np.float32)


# --- the analysis ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bpm, first, drums, declared",
    [
        (70.0, 0.37, False, 70),
        (92.5, 1.10, True, 90),  # MusicGen asked for 90, played 92.5
        (120.0, 0.25, False, None),  # nothing declared
        (135.5, 0.80, True, 135),
        (170.0, 0.33, True, 170),
    ],
)
def test_tempo_and_first_downbeat_within_tolerance(bpm, first, drums, declared):
    audio = synth(bpm, first, 20.0, drums=drums)[None]
    found = analyse(audio, RATE, 4, declared)
    assert found.tempo is not None, found.reason
    assert abs(found.tempo.bpm - bpm) < 0.5
    assert abs(found.tempo.first_downbeat - first) < 0.020
    assert found.tempo.confidence > 0.3


def test_noise_has_no_reliable_tempo():
    noise = (0.2 * np.random.default_rng(3).standard_normal((2, 15 * RATE))).astype(np.float32)
    found = analyse(noise, RATE, 4, None)
    assert found.tempo is None and "no steady beat" in found.reason


# --- the loop construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, bars, first_sample, loop_start_sample",
    [
        (None, None, 1000 + 4800, 0),  # whole file from the first downbeat with room for the fade
        ("auto", 3, 0, 1000 + 4800),  # the same downbeat, the audio before it kept as an intro
        (2, None, 0, 1000 + 2 * 4800),  # two bars after the first downbeat
        (1.3, 2, 0, 1000 + 4800),  # the downbeat nearest 1.3 s (1.45 s)
    ],
)
def test_bar_loop_joins_the_end_to_what_preceded_the_loop_start(start, bars, first_sample, loop_start_sample):
    from importer.loop import bar_loop

    rate = 4000  # 200 BPM, 4/4: a bar is 1.2 s = 4800 samples; first downbeat at 0.25 s = sample 1000
    audio = np.random.default_rng(0).standard_normal((2, 40000)).astype(np.float32)
    result = bar_loop(
        audio, rate, bpm=200.0, first_downbeat=0.25, bar_beats=4, crossfade_seconds=None, bars=bars, start=start
    )
    s = first_sample + loop_start_sample  # the loop start in the input
    assert result.start == loop_start_sample and result.trimmed == first_sample
    assert result.length % 4800 == 0 and result.bars == result.length // 4800
    assert result.bars == (bars or (40000 - s) // 4800)
    assert result.audio.shape[1] == result.start + result.length
    assert np.array_equal(result.audio[:, -1], audio[:, s - 1])  # the end is what preceded the loop start...
    assert np.array_equal(result.audio[:, result.start], audio[:, s])  # ...so the wrap is the track's own step
    assert np.array_equal(result.audio[:, : result.start + 10], audio[:, first_sample : s + 10])  # intro untouched


def test_bar_loop_refuses_more_bars_than_fit():
    from importer.loop import LoopDoesNotFit, bar_loop

    audio = np.zeros((1, 40000), dtype=np.float32)
    with pytest.raises(LoopDoesNotFit, match="at most 7 bars fit"):
        bar_loop(audio, 4000, bpm=200.0, first_downbeat=0.25, bar_beats=4, crossfade_seconds=None, bars=8, start=None)


# --- loops through the render chain, checked in the decoded files -----------------------------


def raw_entry(cache: LocalCache, audio: np.ndarray, key: str, info: dict | None = None):
    """Audio at MusicGen's rate as build.store_raw stores it: the raw entry of ``key``."""
    from importer.audio import resample

    pcm = resample(audio, RATE, RAW_RATE)
    staging = cache.staging_dir()
    path = staging / "audio.f32"
    np.ascontiguousarray(pcm, dtype="<f4").tofile(path)
    entry = cache.put(
        "raw",
        key,
        {"audio.f32": path},
        {"sample_rate": RAW_RATE, "channels": pcm.shape[0], "samples": pcm.shape[1], **(info or {})},
    )
    shutil.rmtree(staging, ignore_errors=True)
    return entry


def onsets(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Times of the synthetic hits in decoded audio: the first millisecond whose energy is
    4x the mean of the 20 ms before it (5 ms back), one per 150 ms (hits here are >= 350 ms apart)."""
    mono = pcm.mean(axis=0).astype(np.float64)
    frame = rate // 1000
    usable = mono.size // frame * frame
    energy = (mono[:usable] ** 2).reshape(-1, frame).mean(axis=1)
    floor = 1e-3 * energy.max()
    found: list[int] = []
    for i in range(25, energy.size):
        if energy[i] > 4 * (energy[i - 25 : i - 5].mean() + floor) and (not found or i - found[-1] > 150):
            found.append(i)
    return np.array(found) * frame / rate


@pytest.mark.parametrize(
    "bpm, first, loop_start, loop_bars, downbeat",
    [
        (92.5, 1.10, None, 4, 1),  # loop = whole file, from the first downbeat a bar in (room for the fade)
        (128.0, 0.61, 2, None, 2),  # intro of 2 bars after the first downbeat, then as many bars as fit
    ],
)
def test_bar_loop_in_decoded_ogg_and_mp3(tmp_path, bpm, first, loop_start, loop_bars, downbeat):
    audio = np.stack([synth(bpm, first, 24.0, drums=True), synth(bpm, first, 24.0, drums=True, seed=1)])
    cache = LocalCache(tmp_path / "cache")
    raw = raw_entry(cache, audio, "0" * 64)
    # Loudness left as made: a limiter on these spiky test drums would smear the hits the check finds.
    settings = RenderSettings(
        EncodeSettings(("ogg", "mp3"), RATE),
        loop_crossfade=2.0,
        loudness_target=None,
        tempo=True,
        bpm_hint=float(round(bpm)),
        loop_bars=loop_bars,
        loop_start=loop_start,
        tags=TrackTags(title="t", render_key="f" * 64, model="m", seed=1, version="0"),
    )
    entry = render_raw(cache, raw, settings, "f" * 64, {})
    loop, tempo = entry.info["loop"], entry.info["tempo"]
    bar = 4 * 60.0 / bpm
    bars = loop["bars"]
    assert bars == (loop_bars or int((24.0 - (first + downbeat * bar)) // bar))
    assert abs(loop["bpm"] - bpm) < 0.5 and tempo["bpm"] == loop["bpm"]
    assert abs(loop["length"] / RATE - bars * bar) < 0.001  # whole bars at the true tempo, within 1 ms
    intro = loop_start is not None
    chosen = first + downbeat * bar  # the downbeat chosen, in the audio as made
    if intro:
        assert abs(loop["start"] / RATE - chosen) < 0.020
        assert abs(tempo["first_downbeat"]["seconds"] - first) < 0.020
    else:
        assert loop["start"] == 0 and tempo["first_downbeat"]["samples"] == 0
        assert entry.info["samples"] == loop["length"] and tempo["beats"] == 4 * bars
    for fmt in ("ogg", "mp3"):
        path = entry.files[f"audio.{fmt}"]
        pcm = decode_pcm(path, RATE, 2, fmt=fmt)
        assert pcm.shape[1] == loop["start"] + loop["length"] == entry.info["samples"]
        found = read_tags(path, fmt)
        assert (int(found["LOOPSTART"]), int(found["LOOPLENGTH"])) == (loop["start"], loop["length"])
        assert seam_check(pcm, loop["start"]).ok, fmt
        # Play through the seam: the beat before the end and the first one after LOOPSTART are one
        # beat apart.
        played = np.concatenate([pcm, pcm[:, loop["start"] : loop["start"] + RATE]], axis=1)
        hits = onsets(played, RATE)
        end = pcm.shape[1] / RATE
        before, after = hits[hits < end - 0.005][-1], hits[hits >= end - 0.005][0]
        assert abs((after - before) - 60.0 / bpm) < 0.010, (fmt, before, after)


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    ["loop_bars = 8", 'loop_start = "auto"', "loop_start = 2", "loop_start = 4.5", "bar_beats = 3", 'tempo = "off"'],
)
def test_tempo_and_loop_settings_change_only_the_render_key(tmp_path, extra):
    from test_keys import BASE, keys_of

    looped = BASE.replace("mp3_quality = 4", "mp3_quality = 4\nloop = true")
    base = keys_of(tmp_path, looped, "a.trackspec")
    changed = keys_of(tmp_path, looped.replace("loop = true", f"loop = true\n{extra}"), "b.trackspec")
    assert changed.generation == base.generation
    assert changed.render != base.render


def test_bad_loop_settings_name_the_field(tmp_path):
    from importer.errors import SpecError

    path = tmp_path / "bad.trackspec"
    path.write_text('prompt = "x"\n[output]\nloop = true\nloop_bars = 0\n', encoding="utf-8")
    with pytest.raises(SpecError, match=r"output.loop_bars"):
        parse_spec(path, builtin_defaults(), max_duration=600.0)
    path.write_text('prompt = "x"\n[output]\nloop = true\nloop_start = "intro"\n', encoding="utf-8")
    with pytest.raises(SpecError, match=r"output.loop_start.*auto"):
        parse_spec(path, builtin_defaults(), max_duration=600.0)


# --- the CLI ---------------------------------------------------------------------------------

ORIGIN = """\
prompt = "slow synthwave groove, warm pads, 90 bpm"
duration = 60.0
seed = 1

[generation]
model = "{model}"

[output]
loop = true
formats = ["ogg", "mp3"]

[meta]
bpm = 90
"""


def put_raw(game_repo, spec_path, audio: np.ndarray) -> None:
    """``audio`` as the raw entry of the spec's generation key, as a build would have cached it."""
    spec = parse_spec(spec_path, builtin_defaults(), max_duration=600.0)
    model = resolve_model(spec.model, spec.revision, game_repo.root, State(game_repo.root / ".probe-state.json"))
    keys = track_keys(spec, model)
    raw_entry(
        LocalCache(game_repo.cache), audio, keys.generation, {"seed": keys.seed, "inputs": keys.generation_inputs}
    )


def actions(result) -> dict[str, str]:
    return {t["name"]: t["action"] for t in result.json()["tracks"]}


def test_origin_track_loops_whole_bars_and_loop_bars_rerenders_without_generating(game_repo, tiny_model):
    measured = 94.0  # MusicGen was asked for 90: 4.4 % off, which status warns about
    spec = game_repo.write_spec("origin", ORIGIN.format(model=tiny_model))
    put_raw(game_repo, spec, np.stack([synth(measured, 0.7, 60.0, drums=True)] * 2))
    result = game_repo.run("build", "--json", check_rc=0)
    assert actions(result) == {"origin": "encode"}  # rendered from the cached audio, nothing generated
    track = assert_index_matches_disk(game_repo)["tracks"]["origin"]  # schema, digests, decoded lengths
    bar = 4 * 60.0 / measured
    loop, tempo = track["loop"], track["tempo"]
    assert abs(tempo["bpm"] - measured) < 0.5 and tempo["declared"] == 90.0 and tempo["bar_beats"] == 4
    assert loop["start"] == 0 and loop["bars"] == int((60.0 - 0.7 - bar) // bar)
    assert abs(loop["length"] / 44100 - loop["bars"] * 240.0 / loop["bpm"]) < 0.001  # at the measured tempo
    assert abs(loop["length"] / 44100 - loop["bars"] * bar) < 0.005  # 22 bars: 0.1 per mille of tempo
    assert track["samples"] == loop["length"] and tempo["beats"] == 4 * loop["bars"]
    status_run = game_repo.run("status", "--json", check_rc=0)
    assert status_run.imported == []  # status stays light: no numpy, no librosa
    status = status_run.json()
    jsonschema.validate(status, json.loads((PROJECT_ROOT / "importer/schemas/status.schema.json").read_text()))
    row = next(t for t in status["tracks"] if t["name"] == "origin")
    assert row["tempo"]["bpm"] == tempo["bpm"] and row["tempo"]["declared"] == 90.0 and row["tempo"]["warning"]
    assert "warning: measured tempo 94.0 BPM (declared 90, +4.4 %, over 3 %)" in game_repo.run("status").stdout
    game_repo.run("report", check_rc=0)
    page = (game_repo.root / "assets/music/.report/index.html").read_text(encoding="utf-8")
    assert "measured tempo 94.0 BPM (declared 90, +4.4 %, over 3 %)" in page
    assert f"length {loop['length']} samples: {loop['bars']} bars at {loop['bpm']:g} BPM" in page

    spec.write_text(spec.read_text().replace("loop = true", "loop = true\nloop_bars = 8"))
    result = game_repo.run("build", "--json", check_rc=0)
    assert actions(result) == {"origin": "encode"}
    track = game_repo.index()["tracks"]["origin"]
    assert track["loop"]["bars"] == 8 and abs(track["loop"]["length"] / 44100 - 8 * bar) < 0.002
    assert {**track["tempo"], "beats": 0} == {**tempo, "beats": 0} and track["tempo"]["beats"] == 32


NOISE = """\
prompt = "static"
duration = 12.0
seed = 2

[generation]
model = "{model}"

[output]
loop = true
loop_start = 2
"""


def test_noise_falls_back_to_the_plain_loop_and_says_so(game_repo, tiny_model):
    spec = game_repo.write_spec("static", NOISE.format(model=tiny_model))
    noise = (0.2 * np.random.default_rng(5).standard_normal((2, 12 * RATE))).astype(np.float32)
    put_raw(game_repo, spec, noise)
    result = game_repo.run("build", check_rc=0)
    assert "tempo not measured: no steady beat" in result.stderr
    assert "loop_start and loop_bars are not used" in result.stderr
    track = assert_index_matches_disk(game_repo)["tracks"]["static"]
    assert track["tempo"] is None
    assert track["loop"] == {"start": 0, "length": track["samples"], "start_seconds": 0.0, "bars": None, "bpm": None}
    assert track["samples"] == 12 * RATE - 2 * RATE  # today's 2 s crossfade
    assert json.loads(json.dumps(track))  # plain JSON
