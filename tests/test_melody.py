"""Melody conditioning: ``generation.melody`` with a MusicGen-Melody model.

The chroma (computed without torchaudio) against transformers' extractor and a known
signal; the step decoder and the decode loop against transformers' own melody model; keys,
spec errors, batch invariance, a real build and audition with the tiny melody model.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from helpers import keys_of, theme

torch = pytest.importorskip("torch")

from importer.errors import GenerationError  # noqa: E402
from importer.generate.base import GenerationRequest  # noqa: E402
from importer.generate.chroma import PITCH_CLASSES, ChromaSettings, chroma, power_spectrogram  # noqa: E402
from importer.generate.decoder import StepDecoder, fuse_layers, kv_length  # noqa: E402
from importer.generation import load_backend  # noqa: E402

RATE = 32000


def sine(freq: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def request(name: str, seed: int, melody: np.ndarray | None, prompt: str = "boss theme", **kw) -> GenerationRequest:
    settings = dict(duration=1.0, temperature=1.0, top_k=250, top_p=0.0, guidance_scale=3.0)
    settings.update(kw)
    return GenerationRequest(name=name, prompt=prompt, seed=seed, melody=melody, **settings)


@pytest.fixture(scope="module")
def melody_backend(tiny_melody_model):
    loaded = load_backend(str(tiny_melody_model), None, "cpu", max_batch=4)
    yield loaded
    loaded.close()


# ----------------------------------------------------------------------- chroma
def test_a_pure_a4_lights_the_a_bin_and_silence_lights_c():
    settings = ChromaSettings()
    frames = chroma(sine(440.0, 3.0), settings)
    assert frames.shape == (1 + 3 * RATE // 4096, 12)  # centred frames, one hop apart
    assert torch.equal(frames.sum(-1), torch.ones(frames.shape[0]))  # one-hot
    assert {PITCH_CLASSES[i] for i in frames.argmax(-1).tolist()} == {"A"}
    c5 = chroma(sine(523.25, 1.0), settings)
    assert {PITCH_CLASSES[i] for i in c5.argmax(-1).tolist()} == {"C"}
    e4 = chroma(sine(329.63, 1.0), settings)
    assert {PITCH_CLASSES[i] for i in e4.argmax(-1).tolist()} == {"E"}
    # shorter than n_fft: padded on both sides to n_fft, as the extractor does (5 frames)
    assert chroma(sine(440.0, 0.1), settings).shape == (5, 12)
    silent = chroma(np.zeros(RATE, dtype=np.float32), settings)
    assert set(silent.argmax(-1).tolist()) == {0}


def test_chroma_is_transformers_feature_extractor_s():
    """The extractor's own code (filter bank, normalisation, one-hot), given our spectrogram;
    our spectrogram is torchaudio's definition (checked against a direct DFT here)."""
    from transformers.audio_utils import chroma_filter_bank
    from transformers.models.musicgen_melody.feature_extraction_musicgen_melody import (
        MusicgenMelodyFeatureExtractor,
    )

    settings = ChromaSettings()
    extractor = object.__new__(MusicgenMelodyFeatureExtractor)  # __init__ needs torchaudio
    extractor.n_fft, extractor.hop_length = settings.n_fft, settings.hop_length
    extractor.chroma_filters = torch.from_numpy(
        chroma_filter_bank(sampling_rate=RATE, num_frequency_bins=settings.n_fft, tuning=0, num_chroma=12)
    ).float()
    extractor.spectrogram = lambda w: power_spectrogram(w, settings.n_fft, settings.hop_length)
    rng = np.random.default_rng(0)
    for audio in (rng.standard_normal(3 * RATE).astype(np.float32), sine(300.0, 0.2) + sine(700.0, 0.2)):
        reference = extractor._torch_extract_fbank_features(torch.from_numpy(audio)[None])[0]
        assert torch.equal(reference, chroma(audio, settings))

    # torchaudio's Spectrogram(power=2, normalized=True): |DFT of the Hann-windowed frame|^2 / sum(w^2)
    n_fft, hop = 64, 16
    x = torch.from_numpy(rng.standard_normal(200)).double()
    ours = power_spectrogram(x[None], n_fft, hop)[0]
    window = torch.hann_window(n_fft, dtype=torch.float64)
    padded = torch.nn.functional.pad(x[None, None], (n_fft // 2, n_fft // 2), mode="reflect")[0, 0]
    frame = padded[3 * hop : 3 * hop + n_fft] * window
    direct = torch.fft.rfft(frame).abs() ** 2 / window.pow(2).sum()
    torch.testing.assert_close(ours[:, 3], direct)


# ------------------------------------------------------------------ the model
def test_tiny_melody_model_builds_and_loads(tiny_melody_model, melody_backend, tiny_stereo_melody_model):
    config = json.loads((tiny_melody_model / "config.json").read_text())
    assert config["model_type"] == "musicgen_melody" and config["chroma_length"] == 235
    extractor = json.loads((tiny_melody_model / "preprocessor_config.json").read_text())
    assert extractor["feature_extractor_type"] == "MusicgenMelodyFeatureExtractor"
    assert (tiny_melody_model / "trackspec-model.toml").is_file()
    assert "melody" in melody_backend.description
    assert melody_backend.melody == ChromaSettings() and melody_backend.chroma_length == 235
    stereo = load_backend(str(tiny_stereo_melody_model), None, "cpu")
    try:
        audio = stereo.generate([request("s", 3, sine(440.0, 1.0))])[0]
        assert audio.shape == (2, RATE) and not np.array_equal(audio[0], audio[1])
    finally:
        stereo.close()


def test_step_decoder_matches_the_transformers_melody_decoder(melody_backend):
    """The prefix (chroma, then text) prefilled into the cache, then tokens after it: the
    logits transformers' decoder gives with the same conditioning prepended."""
    backend = melody_backend
    padded = [request("a", 1, sine(440.0, 2.0)), request("b", 2, None, "x")]
    with torch.inference_mode():
        text, _ = backend._encode_text([r.prompt for r in padded], 32)
        prefix = backend._melody_prefix(padded, text, 0)
        length = prefix.shape[1]
        assert length == 235 + 32
        tokens = torch.randint(0, 2048, (4, 4, 9), generator=torch.Generator().manual_seed(0))
        reference = backend.model.decoder(input_ids=tokens.reshape(-1, 9), encoder_hidden_states=prefix).logits
        reference = reference.reshape(4, 4, length + 9, -1)[:, :, length:]
        decoder = StepDecoder(
            backend.model.decoder, fuse_layers(backend.model.decoder), 4, 0, max_len=300, prefix_len=length
        )
        decoder.set_prefix(prefix)
        positions = torch.arange(9) + length
        prefill = decoder.forward(tokens[:, :, :5], positions[:5], kv_length(length + 4, decoder.max_len))
        steps = [
            decoder.forward(tokens[:, :, t : t + 1], positions[t : t + 1], kv_length(length + t, decoder.max_len))
            for t in range(5, 9)
        ]
    torch.testing.assert_close(prefill, reference[:, :, 4], rtol=1e-4, atol=1e-4)
    for t, logits in zip(range(5, 9), steps):
        torch.testing.assert_close(logits, reference[:, :, t], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(reference[0, :, 4], reference[2, :, 4])  # the melody matters: can fail


def test_greedy_decode_loop_matches_transformers_generate(melody_backend):
    """With the melody's chroma as ``input_features``, and without a melody (transformers
    then conditions on its null chroma), our loop makes what ``generate()`` makes."""
    backend = melody_backend
    prompt = "synthwave calm d minor"
    tokens = backend.tokenizer([prompt], padding="max_length", max_length=32, return_tensors="pt")
    melody = sine(440.0, 2.0) + sine(660.0, 2.0)
    outputs = []
    for given in (melody, None):
        kwargs = {} if given is None else {"input_features": chroma(given, backend.melody)[None]}
        with torch.inference_mode():
            reference = backend.model.generate(
                **tokens, **kwargs, do_sample=False, guidance_scale=3.0, max_new_tokens=50 + 3
            )
        ours = backend.generate([request("g", 1, given, prompt, temperature=0.0)])[0]
        assert ours.shape == (1, RATE)
        assert np.array_equal(reference[0].numpy()[:, :RATE], ours)
        outputs.append(ours)
    assert not np.array_equal(*outputs)


def test_a_melody_track_sounds_the_same_alone_and_batched(melody_backend):
    """Batch invariance for melody batches (windows included: each window hears the melody
    from its own start): alone, with other melodies, with a track without one, padded."""
    backend = melody_backend
    windowed = dict(duration=1.5, window=1.0, window_stride=0.6)
    a = request("a", 1, sine(440.0, 2.5) + sine(554.37, 2.5), **windowed)
    batch = [
        a,
        request("b", 2, sine(392.0, 0.7), "other prompt", **windowed),
        request("c", 3, None, **windowed),
        request("d", 1, sine(330.0, 2.5), **windowed),
    ]
    alone = backend.generate([a])[0]
    together = backend.generate(batch)
    assert alone.shape == (1, 48000)
    assert np.array_equal(together[0], alone)
    assert not np.array_equal(together[3], alone)  # same seed and prompt, another melody
    backend.fixed_batch = True  # padded to max_batch rows, as on CUDA
    try:
        padded = backend.generate([a, batch[1]])
    finally:
        backend.fixed_batch = False
    assert np.allclose(padded[0], alone, atol=1e-5)


def test_a_model_without_melody_support_refuses_a_melody(tiny_model):
    backend = load_backend(str(tiny_model), None, "cpu")
    try:
        result = backend.generate([request("m", 1, sine(440.0, 1.0))])[0]
    finally:
        backend.close()
    assert isinstance(result, GenerationError)
    assert "generation.melody is set, but this model takes no melody" in str(result)


# --------------------------------------------------------------- keys and specs
SPEC = """\
prompt = "boss battle, same theme, faster"
duration = 1

[generation]
model = "{model}"
melody = "{melody}"
"""


def test_the_key_holds_the_melody_s_content_never_its_path(game_repo, tiny_melody_model):
    melody_file = theme(game_repo.root / "audio" / "theme.ogg")
    game_repo.write_spec("boss", SPEC.format(model=tiny_melody_model, melody="audio/theme.ogg"))
    game_repo.write_spec("plain", f'prompt = "x"\nduration = 1\n[generation]\nmodel = "{tiny_melody_model}"\n')
    first = keys_of(game_repo.root)
    digest = first["boss"]["inputs"]["melody"]["audio"]
    assert first["boss"]["inputs"]["melody"] == {"audio": digest} and len(digest) == 64
    assert "theme.ogg" not in json.dumps(first["boss"]["inputs"])
    assert "melody" not in first["plain"]["inputs"]

    os.utime(melody_file, ns=(10**18, 10**18))  # touched: same bytes, same key
    assert keys_of(game_repo.root)["boss"]["key"] == first["boss"]["key"]
    melody_file.rename(game_repo.root / "moved.ogg")  # moved: same bytes, same key
    game_repo.write_spec("boss", SPEC.format(model=tiny_melody_model, melody="moved.ogg"))
    assert keys_of(game_repo.root)["boss"]["key"] == first["boss"]["key"]
    theme(game_repo.root / "moved.ogg", frequency=392.0)  # new bytes: a new key
    changed = keys_of(game_repo.root)["boss"]
    assert changed["key"] != first["boss"]["key"] and changed["inputs"]["melody"]["audio"] != digest
    assert keys_of(game_repo.root)["plain"]["key"] == first["plain"]["key"]


def test_melody_errors_name_the_field(game_repo, tiny_model, tiny_melody_model):
    theme(game_repo.root / "theme.ogg")
    (game_repo.root / "elsewhere.ogg").write_bytes(b"")
    specs = {
        "plain-model": (
            SPEC.format(model=tiny_model, melody="theme.ogg"),
            f"generation.melody: the model {tiny_model} takes no melody (its model_type is 'musicgen')",
        ),
        "missing": (
            SPEC.format(model=tiny_melody_model, melody="nope.ogg"),
            "generation.melody: nope.ogg is not a file",
        ),
        "outside": (
            SPEC.format(model=tiny_melody_model, melody="../elsewhere.ogg"),
            "generation.melody: ../elsewhere.ogg is outside the game repo",
        ),
    }
    for name, (text, _) in specs.items():
        game_repo.write_spec(name, text)
    game_repo.write_spec("fine", SPEC.format(model=tiny_melody_model, melody="theme.ogg"))
    result = game_repo.run("plan", check_rc=1)
    for name, (_, message) in specs.items():
        line = next(line for line in result.stdout.splitlines() if f"{name}.trackspec:" in line)
        assert message in line, line
        assert f"{name}.trackspec:6:" in line  # file:line:col of the melody key
    assert "generate  fine" in result.stdout
    assert not {"torch", "numpy"} & set(result.imported)
    build = game_repo.run("build", check_rc=1)
    assert "takes no melody" in build.stdout + build.stderr


# ----------------------------------------------------------------- end to end
def test_a_melody_track_builds_and_auditions(game_repo, tiny_melody_model):
    repo = game_repo
    theme(repo.root / "audio" / "theme.ogg")
    repo.write_spec("boss", SPEC.format(model=tiny_melody_model, melody="audio/theme.ogg"))
    repo.run("build", check_rc=0)
    key = repo.index()["tracks"]["boss"]["keys"]["generation"]
    entry = repo.cache / "v1" / "raw" / key[:2] / key
    info = json.loads((entry / "manifest.json").read_text())["info"]
    raw = np.fromfile(entry / "audio.f32", dtype="<f4")
    assert (info["channels"], info["samples"], info["sample_rate"]) == (1, RATE, RATE)
    assert raw.size == RATE and np.isfinite(raw).all() and raw.std() > 0
    assert "melody" in info["inputs"]

    # A new melody file makes the track stale (the no-op record watches the file too).
    theme(repo.root / "audio" / "theme.ogg", frequency=330.0)
    stale = repo.run("build", "--check", check_rc=1)
    assert "stale     boss  (generate: melody changed)" in stale.stdout

    takes = repo.run("audition", "boss", "--takes", "2", "--json", check_rc=0).json()["takes"]
    assert [t["action"] for t in takes] == ["generated", "generated"]
    assert len({t["files"]["ogg"]["sha256"] for t in takes}) == 2
    assert len({t["keys"]["generation"] for t in takes}) == 2


def test_a_melody_track_can_continue_audio(melody_backend):
    """``melody`` and ``continue_from`` combine: the primer's codes lead the track (here
    resynthesised, include_prompt) and the continuation follows the melody."""
    backend = melody_backend
    primer = sine(220.0, 0.5)[None]
    melodic = request("p", 4, sine(440.0, 2.0), primer=primer, include_prompt=True)
    plain = request("p", 4, None, primer=primer, include_prompt=True)
    together = backend.generate([melodic, plain])
    assert np.array_equal(backend.generate([melodic])[0], together[0])
    codes = backend.encode_audio(primer)
    with torch.inference_mode():
        resynthesis = backend._codes_to_audio(codes)[0]
    settled = (25 - 4) * 640  # the codec's receptive field reaches 4 frames back from the cut
    for audio in together:
        assert audio.shape == (1, RATE)
        assert np.abs(audio[:, :settled] - resynthesis[:, :settled]).max() < 1e-5
    assert not np.array_equal(together[0][:, 25 * 640 :], together[1][:, 25 * 640 :])


def test_the_farm_leaves_melody_tracks_to_the_build_machine(monkeypatch):
    """A farm worker has no checkout of the repo: tracks that follow a melody file are
    generated on the build machine, like those that continue audio (and connect no farm)."""
    from types import SimpleNamespace

    from importer import generation
    from importer.farm.client import FarmGenerator
    from importer.farm_settings import FarmSettings

    def plan(inputs: dict) -> SimpleNamespace:
        return SimpleNamespace(track=SimpleNamespace(keys=SimpleNamespace(generation_inputs=inputs)))

    plans = [plan({"melody": {"audio": "0" * 64}}), plan({"continue": {"audio": "1" * 64}})]
    local: list = []
    monkeypatch.setattr(generation, "generate", lambda config, rest, *args: local.extend(rest) or [])
    farm = FarmGenerator(FarmSettings(address="ray://nowhere:10001"), note=lambda message: None)
    monkeypatch.setattr(farm, "_connect", lambda config: pytest.fail("no farm for tracks generated here"))
    farm.generate(SimpleNamespace(batch_size=8), plans, None, None, generation.Listener())
    assert local == plans
