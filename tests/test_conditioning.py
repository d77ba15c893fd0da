"""Conditioning on audio: ``continue_from`` a file or another track (``track:NAME``).

The conformance of continuation with audiocraft (tokens exact) is in test_audiocraft.py;
here: spec errors, what the keys hold, chains (order, key propagation, reasons, cycles),
include_prompt, plan/status and audition, with the tiny model and the real CLI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
import pytest
from helpers import keys_of, theme

HOP = 640  # the tiny model's EnCodec: 32 kHz, 50 frames a second


def raw_audio(repo, name: str) -> tuple[np.ndarray, dict]:
    key = repo.index()["tracks"][name]["keys"]["generation"]
    entry = repo.cache / "v1" / "raw" / key[:2] / key
    info = json.loads((entry / "manifest.json").read_text())["info"]
    return np.fromfile(entry / "audio.f32", dtype="<f4").reshape(info["channels"], info["samples"]), info


def test_continue_from_errors_name_the_field_and_the_chain(game_repo):
    (game_repo.root / "theme.wav").write_bytes(b"")  # exists; never decoded by `plan`
    specs = {
        "no-source": ("continue_seconds = 1", "generation.continue_seconds: needs continue_from"),
        "too-long": (
            'continue_from = "theme.wav"\ncontinue_seconds = 2.0\nwindow = 2.0',
            "generation.continue_seconds: 2 s must be shorter than the window (2 s)",
        ),
        "outside": ('continue_from = "../elsewhere.wav"', "../elsewhere.wav is outside the game repo"),
        "missing": ('continue_from = "nope.wav"', "generation.continue_from: nope.wav is not a file"),
        "bad-name": ('continue_from = "track:Boss Theme"', "generation.continue_from: names no track"),
        "cycle-a": ('continue_from = "track:cycle-b"', "continue_from makes a cycle: cycle-a -> cycle-b -> cycle-a"),
        "cycle-b": ('continue_from = "track:cycle-a"', "continue_from makes a cycle: cycle-b -> cycle-a -> cycle-b"),
        "orphan": (
            'continue_from = "track:nosuch"',
            "continues track 'nosuch', which no spec builds (or whose spec has an error): orphan -> nosuch",
        ),
        "after-orphan": ('continue_from = "track:orphan"', "continues 'orphan', which cannot be built"),
    }
    (game_repo.root / "elsewhere.wav").write_bytes(b"")
    for name, (generation, _) in specs.items():
        game_repo.write_spec(name, f'prompt = "x"\nduration = 3\n\n[generation]\nmodel = "m"\n{generation}\n')
    game_repo.write_spec("fine", 'prompt = "x"\n[generation]\nmodel = "m"\ncontinue_from = "theme.wav"\n')
    result = game_repo.run("plan", check_rc=1)
    for name, (_, message) in specs.items():
        line = next(line for line in result.stdout.splitlines() if f"{name}.trackspec:" in line)
        assert message in line, line
        assert "generation.continue" in line and ":" in line.split(".trackspec:")[1]  # file:line:col
    assert "generate  fine" in result.stdout
    assert not {"torch", "numpy"} & set(result.imported)


def test_the_key_holds_the_audio_s_content_never_its_path(game_repo):
    theme(game_repo.root / "audio" / "theme.ogg")
    spec = 'prompt = "level one"\nduration = 4\n\n[generation]\nmodel = "m"\ncontinue_from = "{}"\n{}'
    game_repo.write_spec("level", spec.format("audio/theme.ogg", ""))
    first = keys_of(game_repo.root)["level"]
    digest = first["inputs"]["continue"]["audio"]
    assert first["inputs"]["continue"] == {"audio": digest, "seconds": None, "include_prompt": False}
    assert "theme" not in json.dumps(first["inputs"])

    path = game_repo.root / "audio" / "theme.ogg"
    os.utime(path, ns=(10**18, 10**18))  # touched: same bytes, same key
    assert keys_of(game_repo.root)["level"]["key"] == first["key"]
    path.rename(game_repo.root / "moved.ogg")  # moved: same bytes, same key
    game_repo.write_spec("level", spec.format("moved.ogg", ""))
    assert keys_of(game_repo.root)["level"]["key"] == first["key"]
    theme(game_repo.root / "moved.ogg", seconds=1.0)  # new bytes: a new key
    changed = keys_of(game_repo.root)["level"]
    assert changed["key"] != first["key"] and changed["inputs"]["continue"]["audio"] != digest
    game_repo.write_spec("level", spec.format("moved.ogg", "include_prompt = true\ncontinue_seconds = 0.5\n"))
    assert keys_of(game_repo.root)["level"]["key"] != changed["key"]


CHAIN = {
    "main": """\
        prompt = "main theme, {mood}"
        duration = 1
        seed = 1

        [generation]
        window = 1.0
        continue_from = "audio/theme.ogg"
        """,
    # discovered before main (b < m): the plan still generates it after main
    "boss": """\
        prompt = "boss fight"
        duration = 1.5
        seed = 2

        [generation]
        window = 1.0
        continue_from = "track:main"
        continue_seconds = 0.5
        include_prompt = true
        """,
}


@pytest.fixture
def chain_repo(game_repo, tiny_model):
    game_repo.env["TRACKSPEC_MODEL"] = str(tiny_model)
    theme(game_repo.root / "audio" / "theme.ogg")
    game_repo.write_spec("main", CHAIN["main"].format(mood="calm"))
    game_repo.write_spec("boss", CHAIN["boss"])
    return game_repo


def test_a_chain_builds_in_order_and_a_change_regenerates_down_the_chain(chain_repo, tiny_model):
    repo = chain_repo
    plan = repo.run("plan", check_rc=0).stdout
    assert "generate  boss  [continues main]  (new)" in plan
    result = repo.run("build", check_rc=0)
    assert result.stdout.index("generate  main") < result.stdout.index("generate  boss")
    index = repo.index()["tracks"]
    main, main_info = raw_audio(repo, "main")
    boss, boss_info = raw_audio(repo, "boss")
    assert main.shape == (1, 32000) and boss.shape == (1, 48000)  # the model's rate and channels
    assert boss_info["inputs"]["continue"] == {
        "track": "main",
        "generation": index["main"]["keys"]["generation"],
        "seconds": 0.5,
        "include_prompt": True,
    }

    # include_prompt: the boss track starts with the codec's resynthesis of main's last 0.5 s
    from importer.generation import load_backend

    torch = pytest.importorskip("torch")
    backend = load_backend(str(tiny_model), None, "cpu")
    codes = backend.encode_audio(np.ascontiguousarray(main[:, -16000:]))
    assert codes.shape == (1, 4, 25)
    with torch.inference_mode():
        resynthesis = backend._codes_to_audio(codes)[0]
    settled = (25 - 4) * HOP  # the decoder's receptive field reaches 4 frames back from the cut
    assert np.abs(boss[:, :settled] - resynthesis[:, :settled]).max() < 1e-5
    assert np.abs(boss[:, :settled]).max() > 0.01
    backend.close()

    status = repo.run("status", check_rc=0).stdout
    assert "  boss: continues main" in status

    # The no-op record holds the file main continues: new bytes there leave the fast path.
    time.sleep(1.1)  # files written within 1 s of a build are not recorded (fastpath.RACY_NS)
    assert "no-op record written" in repo.run("build", "-v", check_rc=0).stderr
    theme_file = repo.root / "audio" / "theme.ogg"
    saved = theme_file.read_bytes()
    theme(theme_file, seconds=1.0)
    stale = repo.run("build", "--check", "-v", check_rc=1)
    assert "theme.ogg changed" in stale.stderr
    assert "stale     main  (generate: continue_from audio changed)" in stale.stdout
    assert "stale     boss  (generate: continues main, which changed)" in stale.stdout
    theme_file.write_bytes(saved)
    assert repo.run("build", check_rc=0).stdout.count("fresh") == 2

    repo.write_spec("main", CHAIN["main"].format(mood="dark"))
    plan = repo.run("plan", check_rc=0).stdout
    assert "generate  main  (prompt changed)" in plan
    assert "generate  boss  [continues main]  (continues main, which changed)" in plan
    repo.run("build", check_rc=0)
    new_index = repo.index()["tracks"]
    assert new_index["boss"]["keys"]["generation"] != index["boss"]["keys"]["generation"]
    assert raw_audio(repo, "boss")[1]["inputs"]["continue"]["generation"] == new_index["main"]["keys"]["generation"]

    # audition: the takes continue main too, and differ only by seed
    takes = repo.run("audition", "boss", "--takes", "2", "--json", check_rc=0).json()["takes"]
    assert [t["action"] for t in takes] == ["generated", "generated"]
    assert len({t["files"]["ogg"]["sha256"] for t in takes}) == 2


def primed(name: str, seed: int, primer: np.ndarray, include_prompt: bool = False, duration: float = 0.6):
    from importer.generate.base import GenerationRequest

    return GenerationRequest(
        name=name,
        prompt=f"track {name}",
        duration=duration,
        seed=seed,
        temperature=1.0,
        top_k=250,
        top_p=0.0,
        guidance_scale=3.0,
        window=1.0,
        window_stride=0.6,
        primer=primer,
        include_prompt=include_prompt,
    )


def test_primed_tracks_keep_batch_invariance_and_mix_with_unprimed_ones(tiny_model):
    """A primed track sounds the same alone and in a batch; tracks with and without a primer
    (or with primers of other lengths) are generated apart, each of the requested length."""
    from importer.generation import load_backend

    pytest.importorskip("torch")
    backend = load_backend(str(tiny_model), None, "cpu", max_batch=4)
    rng = np.random.default_rng(3)
    a, b = (
        (0.3 * rng.standard_normal((1, 9600))).astype(np.float32),
        (0.3 * rng.standard_normal((1, 9600))).astype(np.float32),
    )
    alone = backend.generate([primed("a", 1, a)])[0]
    together = backend.generate(
        [
            primed("a", 1, a),
            primed("b", 2, b),
            primed("c", 3, b[:, :3200]),
            dataclasses.replace(primed("d", 4, b), primer=None),
        ]
    )
    assert np.array_equal(together[0], alone)
    assert [t.shape for t in together] == [(1, 19200)] * 4
    assert not np.array_equal(together[1], together[2])
    backend.close()


def test_a_stereo_model_continues_stereo_audio(tiny_stereo_model):
    """Stereo: each channel is encoded by the codec on its own, codebooks interleaved as the
    decoder reads them; include_prompt starts the track with both channels' resynthesis."""
    from importer.generation import load_backend

    torch = pytest.importorskip("torch")
    backend = load_backend(str(tiny_stereo_model), None, "cpu")
    t = np.arange(16000) / 32000
    primer = np.stack([np.sin(2 * np.pi * 220 * t), 0.5 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    codes = backend.encode_audio(primer)
    assert codes.shape == (1, 8, 25)
    left = backend.model.audio_encoder.encode(torch.from_numpy(primer[None, :1])).audio_codes[0]
    assert torch.equal(codes[:, 0::2], left)
    with torch.inference_mode():
        resynthesis = backend._codes_to_audio(codes)[0]
    audio = backend.generate([primed("s", 5, primer, include_prompt=True, duration=1.0)])[0]
    assert audio.shape == (2, 32000)
    settled = (25 - 4) * HOP
    assert np.abs(audio[:, :settled] - resynthesis[:, :settled]).max() < 1e-5
    assert not np.allclose(audio[0, :settled], audio[1, :settled])
    backend.close()


def test_a_track_continuing_one_whose_raw_audio_was_evicted_regenerates_that_audio(chain_repo):
    """main was restored from a render (a team cache's, or its raw audio evicted): continuing it
    needs its raw audio, so main is generated again (same key: the same audio, the same files)."""
    import shutil

    repo = chain_repo
    repo.run("build", check_rc=0)
    before = repo.index()["tracks"]
    main_raw, _ = raw_audio(repo, "main")
    key = before["main"]["keys"]["generation"]
    shutil.rmtree(repo.cache / "v1" / "raw" / key[:2] / key)
    repo.write_spec("boss", CHAIN["boss"].replace("boss fight", "boss fight, phase two"))
    result = repo.run("build", check_rc=0)
    assert "generate  main  (boss continues its generated audio, which is not in the cache)" in result.stdout
    after = repo.index()["tracks"]
    assert after["main"] == before["main"]  # the same audio, so the same published files
    assert np.array_equal(raw_audio(repo, "main")[0], main_raw)
    assert after["boss"]["keys"]["generation"] != before["boss"]["keys"]["generation"]
    assert raw_audio(repo, "boss")[1]["inputs"]["continue"]["generation"] == key
    assert repo.run("build", "--check").returncode == 0
