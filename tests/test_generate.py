"""MusicGen backend on the tiny model: loading, reproducibility, batching, windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from importer.errors import GenerationError, ModelError
from importer.generate.base import GenerationRequest
from importer.generate.decoder import StepDecoder, fuse_layers
from importer.generate.musicgen import plan_windows
from importer.generate.sampling import GuidedSampler
from importer.generation import load_backend


def request(name="a", prompt="calm synthwave", seed=1, duration=1.0, **kw) -> GenerationRequest:
    settings = dict(temperature=1.1, top_k=250, top_p=0.0, guidance_scale=3.0)
    settings.update(kw)
    return GenerationRequest(name=name, prompt=prompt, duration=duration, seed=seed, **settings)


@pytest.fixture(scope="module")
def backend(tiny_model):
    loaded = load_backend(str(tiny_model), None, "cpu")
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def stereo_backend(tiny_stereo_model):
    loaded = load_backend(str(tiny_stereo_model), None, "cpu")
    yield loaded
    loaded.close()


@pytest.fixture
def request_fixture(request):
    return request


def test_tiny_model_loads_through_from_pretrained(tiny_model, backend):
    assert (tiny_model / "config.json").is_file() and (tiny_model / "model.safetensors").is_file()
    assert backend.sample_rate == 32000 and backend.channels == 1
    assert backend.description.startswith(str(tiny_model))
    # The EnCodec codebooks were randomised before saving and survive the round trip.
    embed = backend.model.audio_encoder.quantizer.layers[0].codebook.embed
    assert embed.abs().sum() > 0 and embed.std() > 0.5


def test_three_seconds_exact_length_and_reproducible(backend):
    first = backend.generate([request(duration=3.0, seed=5)])[0]
    again = backend.generate([request(duration=3.0, seed=5)])[0]
    other = backend.generate([request(duration=3.0, seed=6)])[0]
    assert first.shape == (1, 96000) and first.dtype == np.float32
    assert np.isfinite(first).all() and first.std() > 0
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_track_sounds_the_same_alone_and_batched(backend):
    tracks = [
        request("a", "calm synthwave", 11),
        request("b", "dark ambient drone", 12),
        request("c", "fast chiptune", 13),
    ]
    batched = backend.generate(tracks)
    for track, audio in zip(tracks, batched):
        alone = backend.generate([track])[0]
        assert np.array_equal(alone, audio), track.name
    reordered = backend.generate(list(reversed(tracks)))
    assert np.array_equal(reordered[0], batched[2])


@pytest.mark.parametrize("stereo", [False, True], ids=["mono", "stereo"])
def test_greedy_decode_loop_matches_transformers_generate(request_fixture, stereo):
    """Our loop is the same computation as model.generate() (argmax mode, CFG on), for
    mono and for stereo models (whose left/right codebook pairs share one delay)."""
    backend = request_fixture.getfixturevalue("stereo_backend" if stereo else "backend")
    prompt = "synthwave calm d minor"
    tokens = backend.tokenizer([prompt], padding="max_length", max_length=32, return_tensors="pt")
    with torch.inference_mode():
        reference = backend.model.generate(**tokens, do_sample=False, guidance_scale=3.0, max_new_tokens=50 + 3)
    ours = backend.generate([request(prompt=prompt, duration=1.0, temperature=0.0)])[0]
    assert ours.shape == (2 if stereo else 1, 32000)
    assert np.array_equal(reference[0].numpy()[:, :32000], ours)


def test_stereo_model_generates_two_channels(stereo_backend):
    audio = stereo_backend.generate([request(duration=1.5, seed=2, window=1.0, window_stride=0.6)])[0]
    assert audio.shape == (2, 48000) and not np.array_equal(audio[0], audio[1])


def test_stale_tracks_of_one_length_share_one_batch(backend, monkeypatch):
    calls = []
    real = backend._generate_batch
    monkeypatch.setattr(
        backend, "_generate_batch", lambda batch, progress: calls.append(len(batch)) or real(batch, progress)
    )
    backend.generate(
        [
            request("a", seed=1),
            request("b", "other prompt", seed=2),
            request("c", seed=3),
            request("d", seed=4, duration=2.0),
        ]
    )
    assert sorted(calls) == [1, 3]


def test_out_of_memory_retries_with_half_batches(backend, monkeypatch, caplog):
    """Fault injection: a batch of more than one track runs out of memory (no GPU here)."""
    tracks = [request(str(i), seed=i) for i in range(3)]
    expected = backend.generate(tracks)
    real = backend._generate_batch

    def tight_memory(batch, progress):
        if len(batch) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(batch, progress)

    monkeypatch.setattr(backend, "_generate_batch", tight_memory)
    results = backend.generate(tracks)
    assert all(np.array_equal(a, b) for a, b in zip(results, expected))
    assert "out of memory at batch 3; retrying as batches of 1 and 2" in caplog.text


def test_out_of_memory_with_padded_batches_shrinks_the_padding(tiny_model, monkeypatch, caplog):
    """With batches padded to a fixed row count (CUDA), splitting a batch frees nothing:
    the padding itself halves until the batch fits."""
    padded = load_backend(str(tiny_model), None, "cpu", max_batch=8)
    padded.fixed_batch = True
    real = padded._decoder
    rows_tried = []

    def tight_memory(rows, text_len, max_len):
        rows_tried.append(rows // 2)
        if rows // 2 > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(rows, text_len, max_len)

    monkeypatch.setattr(padded, "_decoder", tight_memory)
    try:
        results = padded.generate([request("a", seed=1), request("b", seed=2)])
    finally:
        padded.close()
    assert all(isinstance(r, np.ndarray) for r in results)
    assert rows_tried == [8, 4, 2] and padded.max_batch == 2
    assert "padding batches to 4 rows" in caplog.text and "padding batches to 2 rows" in caplog.text


def test_continuing_from_codes_reproduces_a_one_shot_run(backend):
    """A window prompted with the first frames continues exactly as one long window would."""
    batch = [request(temperature=0.0)]
    empty = torch.empty((1, 4, 0), dtype=torch.long)
    with torch.inference_mode():
        decoder = backend._decoder(2, 32, 1 + 30 + 3)
        decoder.set_text(*backend._encode_text(["calm"], 32))
        whole = backend._decode_window(decoder, GuidedSampler(batch, backend.device), empty, 30, lambda: None)
        rest = backend._decode_window(decoder, GuidedSampler(batch, backend.device), whole[:, :, :12], 18, lambda: None)
    assert torch.equal(rest, whole[:, :, 12:])


def test_step_decoder_matches_the_transformers_decoder(backend):
    """The static-cache step function computes what transformers' decoder computes:
    a prefill of several positions, then one token at a time, text-conditioned and
    unconditional rows (the latter with no text at all)."""
    states, mask = backend._encode_text(["calm synthwave", "x"], 32)  # 2 prompts + 2 unconditional rows
    tokens = torch.randint(0, 2048, (4, 4, 9), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = backend.model.decoder(
            input_ids=tokens.reshape(-1, 9), encoder_hidden_states=states, encoder_attention_mask=mask
        ).logits.reshape(4, 4, 9, -1)
        decoder = StepDecoder(
            backend.model.decoder, fuse_layers(backend.model.decoder), rows=4, text_len=32, max_len=300
        )
        decoder.set_text(states, mask)
        positions = torch.arange(9)
        prefill = decoder.forward(tokens[:, :, :5], positions[:5], kv_len=256)
        steps = [decoder.forward(tokens[:, :, t : t + 1], positions[t : t + 1], kv_len=256) for t in range(5, 9)]
    torch.testing.assert_close(prefill, reference[:, :, 4], rtol=1e-4, atol=1e-4)
    for t, logits in zip(range(5, 9), steps):
        torch.testing.assert_close(logits, reference[:, :, t], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(steps[0], steps[1])  # the positions matter: the check can fail


def test_padded_batch_gives_the_same_tracks(tiny_model):
    """Padding a batch to a fixed number of rows (as on CUDA) changes no track."""
    padded = load_backend(str(tiny_model), None, "cpu", max_batch=4)
    padded.fixed_batch = True
    try:
        tracks = [request("a", seed=1), request("b", "other prompt", seed=2)]
        expected = padded.generate(tracks)
        padded.fixed_batch = False
        plain = padded.generate(tracks)
    finally:
        padded.close()
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(expected, plain))


def test_windowed_generation_is_one_piece(backend):
    steps = []
    track = request(duration=3.0, seed=3, window=1.0, window_stride=0.6)
    audio = backend.generate([track], progress=lambda n, d, t: steps.append((d, t)))[0]
    assert audio.shape == (1, 96000) and np.isfinite(audio).all()
    # 150 frames: one 50-frame window, then five 30-frame windows; each window adds 3 delay steps.
    assert [(w.prompt, w.new) for w in plan_windows(150, 50, 30)] == [(0, 50)] + [(20, 30)] * 3 + [(20, 10)]
    total = (50 + 3) + 3 * (30 + 3) + (10 + 3)
    assert steps[-1] == (total, total) and len(steps) == total
    assert np.array_equal(audio, backend.generate([track])[0])
    one_window = backend.generate([request(duration=3.0, seed=3)])[0]
    assert not np.array_equal(audio, one_window)


def test_sampling_settings_shape_the_output(backend):
    greedy = backend.generate([request(temperature=0.0, seed=1)])[0]
    assert np.array_equal(greedy, backend.generate([request(temperature=0.0, seed=2)])[0])
    nucleus = backend.generate([request(top_p=0.5, seed=1), request(top_k=1, seed=1)])
    assert not np.array_equal(nucleus[0], greedy)
    assert np.array_equal(nucleus[1], backend.generate([request(top_k=1, seed=9)])[0])


def test_bad_requests_fail_alone(backend):
    results = backend.generate([request("ok", seed=1), request("bad", window=100.0, duration=1.0)])
    assert isinstance(results[0], np.ndarray)
    assert isinstance(results[1], GenerationError) and "window of 100 s" in str(results[1])


def test_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelError, match="not MusicGen"):
        load_backend(str(tmp_path), None, "cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="not a loadable MusicGen model directory"):
        load_backend(str(empty), None, "cpu")


def test_windows_and_strides_floor_to_frames_as_audiocraft():
    from importer.generate.musicgen import seconds_to_frames

    # audiocraft's int(seconds * frame_rate): 0.58 * 50 is 28.999999999999996, so 28 frames
    assert (seconds_to_frames(0.58, 50.0), seconds_to_frames(1.2, 50.0), seconds_to_frames(30.0, 50.0)) == (
        28,
        60,
        1500,
    )
    # its windows for 3.0 s at a 0.58 s stride (100-frame window): 0->100, 72->100, 72->94
    assert [(w.prompt, w.new) for w in plan_windows(150, 100, 28)] == [(0, 100), (72, 28), (72, 22)]
    # continuing from 25 frames: they prompt the first window (25->100), then 40->90
    assert [(w.prompt, w.new) for w in plan_windows(150, 100, 60, primed=25)] == [(25, 75), (40, 50)]
