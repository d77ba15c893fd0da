"""audiocraft as the reference: importing its checkpoints, and conformance to its MusicGen.

The fixture (``../shared/fixtures/audiocraft-musicgen-tiny``, beside the checkout) holds a
tiny random MusicGen exported by audiocraft 1.3.0 and greedy outputs audiocraft made with
it (CPU, float32). These tests import that checkpoint with the real CLI and check that
trackspec's own generation path (``MusicGenBackend``: static KV cache, its windows)
reproduces audiocraft's tokens exactly and its audio within 1e-4. Where trackspec differs
by design (the exact requested length; batch invariance), the test pins the difference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gamerepo import PROJECT_ROOT

torch = pytest.importorskip("torch")

#: shared/ lies beside the checkout (CI copies it there); TRACKSPEC_SHARED_DIR points elsewhere,
#: e.g. from a git worktree that is not beside it.
SHARED = Path(os.environ.get("TRACKSPEC_SHARED_DIR") or PROJECT_ROOT.parent / "shared")
FIXTURE = SHARED / "fixtures" / "audiocraft-musicgen-tiny"
REFS = FIXTURE / "refs"
PROMPTS = {"p0": "calm synthwave pad, 90 bpm", "p1": "epic battle drums", "p2": "lofi hip hop beat with mellow piano"}
AUDIO_TOLERANCE = 1e-4

if not FIXTURE.is_dir():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"the audiocraft fixture is missing in CI: {FIXTURE}")
    pytest.skip(f"no audiocraft fixture at {FIXTURE}", allow_module_level=True)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "importer", *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def ref(case: str, name: str) -> np.ndarray:
    return np.load(REFS / case / name)


def request(prompt: str, duration: float, stride: float = 1.2, name: str = "t"):
    from importer.generate.base import GenerationRequest

    # audiocraft's settings for every reference: greedy, cfg_coef 3.0, max_duration 2.0
    return GenerationRequest(
        name=name,
        prompt=PROMPTS[prompt],
        duration=duration,
        seed=0,
        temperature=0.0,
        top_k=250,
        top_p=0.0,
        guidance_scale=3.0,
        window=2.0,
        window_stride=stride,
    )


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """The fixture's checkpoint, converted by the real CLI."""
    out = tmp_path_factory.mktemp("audiocraft") / "tiny-musicgen"
    proc = cli(
        "model", "import-audiocraft", str(FIXTURE / "checkpoint"), str(out), "--t5", str(FIXTURE / "checkpoint" / "t5")
    )
    assert proc.returncode == 0, proc.stderr
    assert f'model = "{out}"' in proc.stdout
    return out


@pytest.fixture(scope="module")
def backend(imported):
    from importer.generation import load_backend

    torch.set_num_threads(1)  # as the references were made; the tolerance holds either way
    loaded = load_backend(str(imported), None, "cpu")
    yield loaded
    loaded.close()


def codes_of(backend, requests, primed=None) -> np.ndarray:
    return backend.generate_codes(requests, primed=primed).cpu().numpy()


def test_import_writes_a_transformers_model_folder(imported):
    from importer.licences import license_of

    config = json.loads((imported / "config.json").read_text())
    assert config["model_type"] == "musicgen"
    assert config["decoder"]["vocab_size"] == 1024 and config["decoder"]["num_codebooks"] == 4
    assert config["decoder"]["pad_token_id"] == config["decoder"]["bos_token_id"] == 1024
    assert config["text_encoder"]["d_model"] == 32 and config["decoder"]["hidden_size"] == 64
    assert config["audio_encoder"]["codebook_size"] == 1024
    assert (imported / "model.safetensors").is_file() and (imported / "tokenizer.json").is_file()
    assert license_of(str(imported)) == "unknown"


def test_the_text_conditions_are_audiocraft_s(backend):
    """T5, output_proj and the mask give audiocraft's cross-attention input; null rows are zeros."""
    conditions = np.load(REFS / "a_p0" / "conditions.npz")
    length = int(conditions["t5_attention_mask"][0].sum())
    states, mask = backend._encode_text([PROMPTS["p0"]], 32)
    states = states.float().cpu().numpy()
    np.testing.assert_allclose(states[0, :length], conditions["cross_attention_src"][0, :length], atol=1e-5)
    assert not states[0, length:].any() and not states[1].any() and not mask[1].any()
    assert not conditions["cross_attention_src"][1].any()


@pytest.mark.parametrize(
    "case, prompt, duration, stride",
    [
        ("a_p0", "p0", 1.0, 1.2),
        ("a_p1", "p1", 1.0, 1.2),
        ("b_p0_long", "p0", 4.0, 1.2),  # three windows: 0->100, 40->100, 40->80 frames
        ("b_p1_long", "p1", 4.0, 1.2),
        # audiocraft floors seconds to frames: a 0.58 s stride is 28 frames (0.58 * 50 = 28.999...)
        ("d_p0_frac_stride", "p0", 3.0, 0.58),
    ],
)
def test_tokens_and_audio_equal_audiocraft_s(backend, case, prompt, duration, stride):
    req = request(prompt, duration, stride)
    codes = codes_of(backend, [req])
    assert codes.shape == ref(case, "tokens.npy").shape
    assert np.array_equal(codes, ref(case, "tokens.npy"))
    audio = backend.generate([req])[0]
    expected = ref(case, "audio.npy")[0]
    assert audio.shape == expected.shape == (1, round(duration * 32000))
    assert np.abs(audio - expected).max() < AUDIO_TOLERANCE


def test_fractional_duration_keeps_the_exact_length(backend):
    """1.15 s: audiocraft makes int(1.15 * 50) = 57 frames (1.14 s); trackspec makes 58 and
    cuts the audio to 36800 samples. The frames are audiocraft's except where its shorter
    generation puts special tokens past the end: the delayed codebooks 2 and 3 of frame 56."""
    req = request("p0", 1.15)
    codes = codes_of(backend, [req])
    expected = ref("d_p0_frac_duration", "tokens.npy")
    assert codes.shape == (1, 4, 58) and expected.shape == (1, 4, 57)
    differ = {(int(k), int(t)) for _, k, t in np.argwhere(codes[..., :57] != expected)}
    assert differ == {(2, 56), (3, 56)}
    audio = backend.generate([req])[0]
    assert audio.shape == (1, 36800)
    head = 50 * 640  # the codec's receptive field carries the tail difference back a few frames
    assert np.abs(audio[:, :head] - ref("d_p0_frac_duration", "audio.npy")[0, :, :head]).max() < AUDIO_TOLERANCE


def test_batched_tracks_keep_batch_invariance_where_audiocraft_does_not(backend):
    """audiocraft does not mask padded text in cross-attention, so its batch changes the
    shorter prompt (row 1 of a_batch_p0_p1 differs from a_p1 in 130 of 200 tokens). trackspec
    masks it: each track is what it is alone, which is audiocraft's B=1 output."""
    codes = codes_of(backend, [request("p0", 1.0), request("p1", 1.0, name="u")])
    batch_ref = ref("a_batch_p0_p1", "tokens.npy")
    assert np.array_equal(codes[0], ref("a_p0", "tokens.npy")[0])
    assert np.array_equal(codes[0], batch_ref[0])  # the longest prompt has no padding there
    assert np.array_equal(codes[1], ref("a_p1", "tokens.npy")[0])
    assert int((codes[1] != batch_ref[1]).sum()) == 130


@pytest.mark.parametrize("case, duration", [("c_p2_continuation", 1.5), ("c_p2_continuation_long", 3.0)])
def test_continuing_from_codes_equals_audiocraft_s_continuation(backend, case, duration):
    """The decode loop's entry for continuation: the encoded prompt audio's codes lead the
    track and prompt the first window (the spec-level feature, encoding audio, comes later)."""
    primed = torch.from_numpy(np.load(REFS / "continuation_prompt_codes.npy"))
    codes = codes_of(backend, [request("p2", duration)], primed=primed)
    assert np.array_equal(codes, ref(case, "tokens.npy"))
    with torch.inference_mode():
        audio = backend._codes_to_audio(torch.from_numpy(codes))
    assert np.abs(audio - ref(case, "audio.npy")).max() < AUDIO_TOLERANCE


def test_continuing_the_prompt_file_equals_audiocraft_s_continuation(backend, monkeypatch):
    """The product path for ``continue_from``: the prompt WAV decoded by the bundled ffmpeg and
    encoded by the model's own EnCodec gives audiocraft's prompt codes; the decoder continues
    from exactly those; tokens are audiocraft's, exactly, and the audio its decode."""
    import dataclasses

    from importer.conditioning import decode_native

    pcm, rate = decode_native(REFS / "continuation_prompt_wav.wav", "prompt")
    assert rate == 32000 and np.array_equal(pcm, np.load(REFS / "continuation_prompt_wav.npy")[0])
    prompt_codes = np.load(REFS / "continuation_prompt_codes.npy")
    assert np.array_equal(backend.encode_audio(pcm).cpu().numpy(), prompt_codes)

    seen = []
    generate_codes = backend.generate_codes

    def recording(batch, progress=None, primed=None):
        codes = generate_codes(batch, progress, primed)
        seen.append((primed.cpu().numpy(), codes.cpu().numpy()))
        return codes

    monkeypatch.setattr(backend, "generate_codes", recording)
    for case, duration in [("c_p2_continuation", 1.5), ("c_p2_continuation_long", 3.0)]:
        req = dataclasses.replace(request("p2", duration), primer=pcm, include_prompt=True)
        audio = backend.generate([req])[0]
        primed, codes = seen.pop()
        assert np.array_equal(primed, prompt_codes)
        assert np.array_equal(codes, ref(case, "tokens.npy"))
        assert audio.shape == (1, round(duration * 32000))
        assert np.abs(audio - ref(case, "audio.npy")[0]).max() < AUDIO_TOLERANCE
    # include_prompt = false: the same codes; the audio is what follows the prompt's 25 frames
    req = dataclasses.replace(request("p2", 1.0), primer=pcm, include_prompt=False)
    audio = backend.generate([req])[0]
    primed, codes = seen.pop()
    assert np.array_equal(codes, ref("c_p2_continuation", "tokens.npy"))
    assert audio.shape == (1, 32000)
    assert np.abs(audio - ref("c_p2_continuation", "audio.npy")[0, :, 16000:]).max() < AUDIO_TOLERANCE


def test_build_continuing_a_wav_gives_audiocraft_s_continuation(game_repo, imported):
    """Acceptance: ``continue_from`` through the real CLI, with and without the prompt published."""
    shutil.copy(REFS / "continuation_prompt_wav.wav", game_repo.root / "theme.wav")
    for name, include, duration in [("with-prompt", "true", 1.5), ("after-prompt", "false", 1.0)]:
        game_repo.write_spec(
            name,
            f"""\
            prompt = "{PROMPTS["p2"]}"
            duration = {duration}

            [generation]
            model = "{imported}"
            temperature = 0
            window = 2.0
            window_stride = 1.2
            continue_from = "theme.wav"
            include_prompt = {include}
            """,
        )
    game_repo.run("build", check_rc=0)
    expected = ref("c_p2_continuation", "audio.npy").reshape(-1)
    for name, start, samples in [("with-prompt", 0, 48000), ("after-prompt", 16000, 32000)]:
        key = game_repo.index()["tracks"][name]["keys"]["generation"]
        raw = game_repo.cache / "v1" / "raw" / key[:2] / key
        audio = np.fromfile(raw / "audio.f32", dtype="<f4")
        assert audio.shape == (samples,)
        assert np.abs(audio - expected[start : start + samples]).max() < AUDIO_TOLERANCE


def test_build_with_the_imported_model_gives_audiocraft_s_audio(game_repo, imported):
    """Acceptance: a spec naming the imported folder builds through the real CLI, and the
    raw audio in the cache is audiocraft's b_p0_long."""
    game_repo.write_spec(
        "pad",
        f"""\
        prompt = "{PROMPTS["p0"]}"
        duration = 4

        [generation]
        model = "{imported}"
        temperature = 0
        guidance_scale = 3.0
        window = 2.0
        window_stride = 1.2
        """,
    )
    game_repo.run("build", check_rc=0)
    key = game_repo.index()["tracks"]["pad"]["keys"]["generation"]
    raw = game_repo.cache / "v1" / "raw" / key[:2] / key
    info = json.loads((raw / "manifest.json").read_text())["info"]
    assert (info["channels"], info["samples"], info["sample_rate"]) == (1, 128000, 32000)
    audio = np.fromfile(raw / "audio.f32", dtype="<f4")
    assert np.abs(audio - ref("b_p0_long", "audio.npy").reshape(-1)).max() < AUDIO_TOLERANCE


# ------------------------------------------------------------------ the converter
def _checkpoint_copy(tmp_path: Path, edit_cfg=None, edit_state=None) -> Path:
    """A copy of the fixture's checkpoint with its LM config or weights edited."""
    import yaml

    src = tmp_path / "checkpoint"
    src.mkdir(parents=True)
    shutil.copy(FIXTURE / "checkpoint" / "compression_state_dict.bin", src)
    package = torch.load(FIXTURE / "checkpoint" / "state_dict.bin", weights_only=True)
    cfg = yaml.safe_load(package["xp.cfg"])
    if edit_cfg:
        edit_cfg(cfg)
    if edit_state:
        edit_state(package["best_state"])
    package["xp.cfg"] = yaml.safe_dump(cfg)
    torch.save(package, src / "state_dict.bin")
    return src


def test_import_errors_are_clear(tmp_path):
    from importer.errors import ModelError
    from importer.generate.audiocraft import convert

    t5 = str(FIXTURE / "checkpoint" / "t5")
    (tmp_path / "empty").mkdir()
    proc = cli("model", "import-audiocraft", str(tmp_path / "empty"), str(tmp_path / "out"), "--t5", t5)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (
        "is not an audiocraft checkpoint folder: state_dict.bin and compression_state_dict.bin missing" in proc.stderr
    )
    assert not (tmp_path / "out").exists()

    def rope(cfg):
        cfg["transformer_lm"]["positional_embedding"] = "rope"

    (tmp_path / "not-t5").mkdir()
    with pytest.raises(ModelError, match="(?s)cannot load the T5 text encoder .*pass --t5"):
        convert(FIXTURE / "checkpoint", tmp_path / "out", t5=str(tmp_path / "not-t5"))

    with pytest.raises(ModelError, match=r"transformer_lm.positional_embedding = 'rope'"):
        convert(_checkpoint_copy(tmp_path / "rope", edit_cfg=rope), tmp_path / "out", t5=t5)

    def melody(cfg):
        cfg["conditioners"]["self_wav"] = {"model": "chroma_stem"}

    with pytest.raises(ModelError, match=r"conditioners = \['description', 'self_wav'\]"):
        convert(_checkpoint_copy(tmp_path / "melody", edit_cfg=melody), tmp_path / "out", t5=t5)

    with pytest.raises(ModelError, match="T5 text encoder folder .*no-t5-here does not exist .*pass --t5"):
        convert(FIXTURE / "checkpoint", tmp_path / "out", t5=str(tmp_path / "no-t5-here"))
    assert not (tmp_path / "out").exists()


def test_import_stereo_with_any_codebook_count(tmp_path):
    """A stereo checkpoint (8 interleaved codebooks, delays [0, 0, 1, 1, ...]) made from the
    fixture's: it converts, loads and generates two channels of the requested length."""
    from importer.generate.audiocraft import convert
    from importer.generation import load_backend
    from importer.licences import license_of

    def stereo_cfg(cfg):
        cfg["channels"] = 2
        cfg["transformer_lm"]["n_q"] = 8
        cfg["codebooks_pattern"]["delay"]["delays"] = [0, 0, 1, 1, 2, 2, 3, 3]
        cfg["interleave_stereo_codebooks"]["use"] = True

    from safetensors.torch import load_file

    t5_weights = load_file(FIXTURE / "checkpoint" / "t5" / "model.safetensors")

    def stereo_state(state):
        # and a T5 fine-tuned with the LM (t5.finetune = true): its weights travel in the checkpoint
        for key, value in t5_weights.items():
            state["condition_provider.conditioners.description.t5." + key] = value * 1.5
        for c in range(4, 8):
            state[f"emb.{c}.weight"] = state[f"emb.{c - 4}.weight"].flip(0).clone()
            state[f"linears.{c}.weight"] = state[f"linears.{c - 4}.weight"].flip(0).clone()

    out = convert(
        _checkpoint_copy(tmp_path, stereo_cfg, stereo_state),
        tmp_path / "stereo",
        t5=str(FIXTURE / "checkpoint" / "t5"),
        license_id="cc-by-4.0",
    )
    assert license_of(str(out)) == "CC-BY-4.0"
    converted = load_file(out / "model.safetensors")
    key = "text_encoder.encoder.block.0.layer.0.SelfAttention.q.weight"
    assert torch.equal(converted[key], t5_weights["encoder.block.0.layer.0.SelfAttention.q.weight"] * 1.5)
    backend = load_backend(str(out), None, "cpu")
    try:
        assert (backend.channels, backend.num_codebooks, backend.delays) == (2, 8, [0, 0, 1, 1, 2, 2, 3, 3])
        audio = backend.generate([request("p0", 0.5)])[0]
        assert audio.shape == (2, 16000) and np.isfinite(audio).all()
        assert not np.array_equal(audio[0], audio[1])
    finally:
        backend.close()
