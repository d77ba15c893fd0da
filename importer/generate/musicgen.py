"""MusicGen through transformers' ``MusicgenForConditionalGeneration``.

Why a decode loop of our own instead of ``model.generate()``: ``generate`` samples the
whole batch from one global RNG (a track would change with its batch), offers no per-step
progress, and returns audio instead of the codes needed to continue a window. The loop
below is the same computation (T5 once, classifier-free guidance as a doubled batch, the
delay pattern, a KV cache), checked token for token against ``generate()`` in greedy mode
by the tests.

Long tracks are generated in windows as audiocraft's ``extend_stride`` does: each window
after the first is prompted with the last ``window - stride`` seconds of codes made so far
and adds ``stride`` seconds; the codes of all windows are decoded by EnCodec once, so the
track is one piece.

MusicGen-Melody checkpoints (``model_type`` ``musicgen_melody``) load as
``MusicgenMelodyForConditionalGeneration``: the melody's chroma (``chroma.py``) and the text
are prepended to the decoder's input (``StepDecoder.set_prefix``), each window getting the
melody from its own start, looped, as audiocraft's ``_generate_tokens`` does.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import GenerationError, ModelError
from .base import MELODY_MODEL_TYPE, GenerationRequest, ProgressFn
from .chroma import ChromaSettings, chroma
from .decoder import GraphedSteps, LayerWeights, StepDecoder, fuse_layers, kv_length
from .sampling import GuidedSampler

log = logging.getLogger(__name__)

#: Prompts are padded to a multiple of this many tokens and only prompts of the same
#: padded length share a batch, so a row's arithmetic never depends on its neighbours.
TEXT_BUCKET = 32


@dataclass(frozen=True)
class WindowPlan:
    """Frame counts of one window: ``prompt`` frames carried over, ``new`` frames made."""

    prompt: int
    new: int


def plan_windows(total_frames: int, window_frames: int, stride_frames: int, primed: int = 0) -> list[WindowPlan]:
    """Split ``total_frames`` into windows of at most ``window_frames`` (audiocraft's scheme).

    ``primed`` frames (codes the track continues from) lead the track and prompt the first
    window. Each later window starts ``stride_frames`` after the one before and is
    prompted with everything of that window after its first ``stride_frames`` frames, as
    audiocraft's ``_generate_tokens`` does; the last window is cut to ``total_frames``.
    """
    first = min(total_frames, window_frames)
    windows = [WindowPlan(primed, first - primed)]
    offset, length = 0, first
    while offset + length < total_frames:
        offset += stride_frames
        prompt = length - stride_frames
        length = min(total_frames - offset, window_frames)
        windows.append(WindowPlan(prompt, length - prompt))
    return windows


def seconds_to_frames(seconds: float, frame_rate: float) -> int:
    """Whole frames in ``seconds``, truncated as audiocraft does (``int(seconds * frame_rate)``).

    audiocraft floors the float product, so a 0.58 s stride is 28 frames (0.58 * 50 is
    28.999999999999996), not 29; windows and strides follow it so that a model's windows
    fall where audiocraft puts them.
    """
    return int(seconds * frame_rate)


def _quiet_transformers() -> None:
    """transformers' own progress bars and advice would drown our output."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else Apple's Metal (``mps``) when present, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device = 'cuda' was asked for, but torch sees no CUDA GPU (use 'auto' or 'cpu')")
    if device == "mps" and not _mps_available():
        raise ModelError("device = 'mps' was asked for, but torch sees no Apple Metal device (use 'auto' or 'cpu')")
    return torch.device(device)


def _load_error(source: str, exc: Exception) -> ModelError:
    if os.path.isdir(source):
        return ModelError(f"{source} is not a loadable MusicGen model directory: {exc}")
    text = str(exc)
    offline_hints = ("connect", "offline", "resolve", "Connection", "huggingface.co", "not a valid model identifier")
    if any(hint in text for hint in offline_hints):
        return ModelError(
            f"cannot download model '{source}': it is not in the Hugging Face cache and the hub cannot be "
            'reached. Use a local model directory instead (--model DIR, or `model = "path/to/dir"`); '
            "`trackspec model tiny DIR` makes a small offline test model."
        )
    return ModelError(f"cannot load model '{source}': {text}")


#: ``model_type`` of the checkpoints this backend loads; the melody ones take ``generation.melody``.
MODEL_TYPES = ("musicgen", MELODY_MODEL_TYPE)


def load_pretrained(source: str, revision: str | None):
    """``(model, tokenizer)`` from a hub id (Hugging Face cache first) or a local directory."""
    model, tokenizer, _ = load_pretrained_with_chroma(source, revision)
    return model, tokenizer


def load_pretrained_with_chroma(source: str, revision: str | None):
    """``(model, tokenizer, chroma settings)``; the settings are ``None`` unless it is a melody model."""
    _quiet_transformers()
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        MusicgenForConditionalGeneration,
        MusicgenMelodyForConditionalGeneration,
    )

    kwargs: dict = {}
    if not os.path.isdir(source):
        kwargs = {"revision": revision} if revision else {}
        try:  # the Hugging Face cache first: no network round trips when it is there
            AutoConfig.from_pretrained(source, local_files_only=True, **kwargs)
            kwargs["local_files_only"] = True
        except (OSError, ValueError):
            pass
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(source, exc) from exc
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_TYPES:
        raise ModelError(
            f"'{source}' is a '{model_type or '?'}' model, not MusicGen "
            "(model_type 'musicgen' or 'musicgen_melody' is needed)"
        )
    melody = model_type == MELODY_MODEL_TYPE
    model_class = MusicgenMelodyForConditionalGeneration if melody else MusicgenForConditionalGeneration
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = model_class.from_pretrained(source, **kwargs)
        settings = _chroma_settings(source, kwargs) if melody else None
    except (OSError, ValueError) as exc:
        raise _load_error(source, exc) from exc
    return model, tokenizer, settings


def _chroma_settings(source: str, kwargs: dict) -> ChromaSettings:
    """The melody feature extractor's settings, read from its ``preprocessor_config.json``
    (instantiating ``MusicgenMelodyFeatureExtractor`` would need torchaudio)."""
    from transformers.feature_extraction_utils import FeatureExtractionMixin

    values, _ = FeatureExtractionMixin.get_feature_extractor_dict(source, **kwargs)
    return ChromaSettings.from_dict(values)


class MusicGenBackend:
    """A MusicGen model loaded once and kept for every batch of this process.

    On CUDA the decoder runs in fp16 and each decoding step is replayed from a CUDA
    graph (``cuda_graphs``). With ``fixed_batch`` (the CUDA default) every batch is padded
    to ``max_batch`` rows, so the GPU runs the same kernels whatever the batch holds and a
    track sounds the same alone and batched (GEMM kernels change with the row count;
    checked on an H200, where unpadded batches did change the audio).
    """

    @classmethod
    def load(cls, source: str, revision: str | None, device: str, max_batch: int = 8) -> MusicGenBackend:
        model, tokenizer, settings = load_pretrained_with_chroma(source, revision)
        return cls(model, tokenizer, device, max_batch=max_batch, name=source, chroma_settings=settings)

    def __init__(
        self,
        model,
        tokenizer,
        device: str,
        max_batch: int = 8,
        name: str = "musicgen",
        cuda_graphs: bool = True,
        fixed_batch: bool | None = None,
        chroma_settings: ChromaSettings | None = None,
    ):
        self.device = resolve_device(device)
        self.max_batch = max(1, max_batch)
        on_gpu = self.device.type == "cuda"
        self.cuda_graphs = cuda_graphs and on_gpu
        self.fixed_batch = on_gpu if fixed_batch is None else fixed_batch
        self.tokenizer = tokenizer
        model.eval()
        self.model = model.to(self.device)
        # fp16 halves the weight traffic of the decoder, which bounds decoding speed on a GPU.
        # T5 and EnCodec stay in fp32: they run once per track and T5 is unstable in fp16.
        self.decoder_dtype = torch.float16 if on_gpu else torch.float32
        self.model.decoder.to(self.decoder_dtype)
        for proj in ("enc_to_dec_proj", "audio_enc_to_dec_proj"):
            if getattr(self.model, proj, None) is not None:
                getattr(self.model, proj).to(self.decoder_dtype)
        #: A MusicGen-Melody: the chroma's settings and frame count, and the prefix length
        #: is ``chroma_length`` + the padded text. ``None`` for a plain MusicGen.
        self.melody = None
        self.chroma_length = 0
        if getattr(model.config, "model_type", None) == MELODY_MODEL_TYPE:
            self.melody = chroma_settings or ChromaSettings()
            self.chroma_length = int(model.config.chroma_length)
        self._layers: list[LayerWeights] | None = None
        self._step_decoder: StepDecoder | None = None
        self._graphs: GraphedSteps | None = None

        audio_config = model.config.audio_encoder
        self.sample_rate = int(audio_config.sampling_rate)
        self.hop = int(np.prod(audio_config.upsampling_ratios))
        self.frame_rate = self.sample_rate / self.hop
        self.num_codebooks = int(model.decoder.config.num_codebooks)
        self.channels = int(model.decoder.config.audio_channels)
        # The delay pattern shifts codebook c by c steps; stereo models interleave left/right
        # codebooks, and each pair shares one delay (as transformers' build_delay_pattern_mask).
        self.delays = [c // self.channels for c in range(self.num_codebooks)]
        self.max_delay = self.delays[-1]
        self.pad_token = int(
            model.generation_config.pad_token_id
            if model.generation_config.pad_token_id is not None
            else model.decoder.config.pad_token_id
        )
        self.start_token = int(
            model.generation_config.decoder_start_token_id
            if model.generation_config.decoder_start_token_id is not None
            else model.decoder.config.bos_token_id
        )
        self.max_positions = int(model.decoder.config.max_position_embeddings)
        if self.melody is not None and self.melody.sampling_rate != self.sample_rate:
            raise ModelError(
                f"{name}: its chroma is made at {self.melody.sampling_rate} Hz and its audio at "
                f"{self.sample_rate} Hz; trackspec supports melody models whose rates match"
            )
        limit = int(getattr(self.tokenizer, "model_max_length", 0) or 0)
        self.max_text_tokens = limit if 0 < limit < 100_000 else 512  # T5's own limit when unset
        dtype_name = str(self.decoder_dtype).replace("torch.", "")
        graphs = ", CUDA graphs" if self.cuda_graphs else ""
        kind = ", melody" if self.melody is not None else ""
        self.description = f"{name} on {self.device.type} ({dtype_name}{graphs}{kind})"

    # ----------------------------------------------------------------- public API
    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressFn | None = None
    ) -> list[np.ndarray | Exception]:
        results: list[np.ndarray | Exception | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            try:
                groups.setdefault(self._batch_signature(request), []).append(i)
            except GenerationError as exc:
                results[i] = exc
        for indices in groups.values():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start : start + self.max_batch]
                audios = self._generate_with_oom_retry([requests[i] for i in chunk], progress)
                for i, audio in zip(chunk, audios, strict=True):
                    results[i] = audio
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self._step_decoder = self._graphs = self._layers = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # --------------------------------------------------------------- batching
    def _frames(self, request: GenerationRequest) -> tuple[int, int, int]:
        """(total frames, window frames, stride frames) of a request."""
        # The total is the exact requested length (rounded up to whole frames, the audio cut
        # to the sample); audiocraft floors it instead. Windows and strides floor as there.
        samples = round(request.duration * self.sample_rate)
        total = math.ceil(samples / self.hop)
        if request.primer is not None and not request.include_prompt:
            total += self._primer_frames(request)  # the new music follows the primer
        window = max(1, seconds_to_frames(request.window, self.frame_rate))
        stride = max(1, seconds_to_frames(request.window_stride, self.frame_rate))
        if request.melody is not None and self.melody is None:
            raise GenerationError(
                f"{request.name}: generation.melody is set, but this model takes no melody "
                "(use a MusicGen-Melody model, e.g. facebook/musicgen-melody)"
            )
        # A melody model's conditioning takes positions before the tokens (prefix_length).
        prefix = self.chroma_length + self._text_bucket(request) if self.melody is not None else 0
        if window + self.max_delay + 1 + prefix > self.max_positions:
            raise GenerationError(
                f"{request.name}: window of {request.window:g} s is longer than this model can attend to "
                f"({(self.max_positions - self.max_delay - 1 - prefix) / self.frame_rate:.1f} s)"
            )
        if total > window and stride >= window:
            raise GenerationError(f"{request.name}: window_stride must be shorter than the window")
        return total, window, stride

    def _text_length(self, request: GenerationRequest) -> int:
        length = len(self.tokenizer(request.prompt)["input_ids"])
        if length > self.max_text_tokens:
            raise GenerationError(
                f"{request.name}: the prompt is {length} tokens; the text encoder takes at most "
                f"{self.max_text_tokens}. Shorten the prompt."
            )
        return length

    def _text_bucket(self, request: GenerationRequest) -> int:
        return math.ceil(self._text_length(request) / TEXT_BUCKET) * TEXT_BUCKET

    def _batch_signature(self, request: GenerationRequest) -> tuple:
        """Requests with equal signatures have equal shapes at every step and can share a batch.

        A melody model's prefix is ``chroma_length`` frames whatever the melody (or none), so
        tracks with and without a melody share batches too."""
        bucket = self._text_bucket(request)
        return (*self._frames(request), bucket, self._primer_frames(request), request.include_prompt)

    def _primer_frames(self, request: GenerationRequest) -> int:
        """Frames EnCodec makes of the request's primer (0 without one)."""
        if request.primer is None:
            return 0
        return math.ceil(request.primer.shape[-1] / self.hop)

    def _generate_with_oom_retry(
        self, batch: list[GenerationRequest], progress: ProgressFn | None
    ) -> list[np.ndarray | Exception]:
        try:
            return list(self._generate_batch(batch, progress))
        except torch.OutOfMemoryError:
            pass  # retried below: outside the handler, the failed batch's tensors can be freed
        self._step_decoder = self._graphs = None  # its buffers are sized for the failed batch
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if self.fixed_batch and self.max_batch > 1:
            # Batches are padded to max_batch rows, so a smaller batch alone frees nothing:
            # the padding shrinks. Tracks made from now on differ from those made before.
            self.max_batch //= 2
            log.warning(
                "CUDA out of memory at %d rows; padding batches to %d rows from now on",
                self.max_batch * 2,
                self.max_batch,
            )
            if len(batch) <= self.max_batch:
                return self._generate_with_oom_retry(batch, progress)
        if len(batch) == 1:
            return [
                GenerationError(
                    f"{batch[0].name}: out of GPU memory even at batch size 1; use a smaller model or a shorter window"
                )
            ]
        half = len(batch) // 2
        log.warning(
            "CUDA out of memory at batch %d; retrying as batches of %d and %d", len(batch), half, len(batch) - half
        )
        return self._generate_with_oom_retry(batch[:half], progress) + self._generate_with_oom_retry(
            batch[half:], progress
        )

    # -------------------------------------------------------------- the model
    @torch.inference_mode()
    def _encode_text(self, prompts: list[str], padded_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """T5 states for the doubled CFG batch: conditional rows, then all-zero rows."""
        tokens = self.tokenizer(prompts, padding="max_length", max_length=padded_length, return_tensors="pt")
        input_ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        states = self.model.text_encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        proj = getattr(self.model, "enc_to_dec_proj", None)
        if proj is not None:
            states = proj(states.to(self.decoder_dtype))
        states = (states * mask[..., None]).to(self.decoder_dtype)
        states = torch.cat([states, torch.zeros_like(states)], dim=0)
        mask = torch.cat([mask, torch.zeros_like(mask)], dim=0)
        return states, mask

    @torch.inference_mode()
    def _generate_batch(self, batch: list[GenerationRequest], progress: ProgressFn | None) -> list[np.ndarray]:
        primed = None
        if batch[0].primer is not None:  # a batch shares its signature: all or none have a primer
            primed = torch.cat([self.encode_audio(r.primer) for r in batch])  # type: ignore[arg-type]
        codes = self.generate_codes(batch, progress, primed)
        audio = self._codes_to_audio(codes)
        samples = round(batch[0].duration * self.sample_rate)
        # Without include_prompt, the published audio starts where the primer's codes end.
        start = 0 if primed is None or batch[0].include_prompt else primed.shape[-1] * self.hop
        return [np.ascontiguousarray(audio[i, :, start : start + samples]) for i in range(len(batch))]

    @torch.inference_mode()
    def encode_audio(self, audio: np.ndarray) -> torch.Tensor:
        """The model's own EnCodec codes (1, K, frames) of float32 ``(channels, samples)`` audio
        at the model's rate and channel count; stereo models interleave left and right codebooks."""
        encodec = self.model.audio_encoder
        bandwidth = encodec.config.target_bandwidths[0]
        per_stream = self.num_codebooks // self.channels
        streams = []
        for channel in range(self.channels):
            x = torch.from_numpy(np.ascontiguousarray(audio[channel : channel + 1]))[None].to(self.device)
            codes = encodec.encode(x, bandwidth=bandwidth).audio_codes[0]  # (1, n_q, frames)
            if codes.shape[1] != per_stream:
                raise GenerationError(
                    f"this model's EnCodec makes {codes.shape[1]} codebooks per channel, "
                    f"its decoder reads {per_stream}: it cannot continue audio"
                )
            streams.append(codes)
        if self.channels == 1:
            return streams[0].long()
        interleaved = torch.stack(streams, dim=2)  # (1, n_q, channels, frames): codebook pairs
        return interleaved.reshape(1, self.num_codebooks, -1).long()

    @torch.inference_mode()
    def generate_codes(
        self, batch: list[GenerationRequest], progress: ProgressFn | None = None, primed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The codes (len(batch), K, frames) of a batch of requests with equal signatures.

        ``primed`` (len(batch), K, P), if given, are codes the tracks continue from: they
        lead the result, count towards each request's duration and prompt the first window
        (audiocraft's continuation, once the audio is encoded). Without it, a track starts
        from nothing.
        """
        total, window, stride = self._frames(batch[0])
        primed_frames = 0 if primed is None else int(primed.shape[-1])
        if primed is not None and (
            primed.shape[:2] != (len(batch), self.num_codebooks) or primed_frames >= min(total, window)
        ):
            raise GenerationError(
                f"{batch[0].name}: {primed_frames} frames to continue from do not fit "
                f"a window of {window} frames and a track of {total}"
            )
        bucket = math.ceil(max(self._text_length(r) for r in batch) / TEXT_BUCKET) * TEXT_BUCKET
        windows = plan_windows(total, window, stride, primed_frames)
        steps_total = sum(w.new + self.max_delay for w in windows)
        steps_done = 0

        def step_done() -> None:
            nonlocal steps_done
            steps_done += 1
            if progress is not None:
                for request in batch:
                    progress(request.name, steps_done, steps_total)

        # Padding rows repeat the first track; they are computed and thrown away.
        rows = max(self.max_batch, len(batch)) if self.fixed_batch else len(batch)
        padded = batch + [batch[0]] * (rows - len(batch))
        longest = 1 + max(w.prompt + w.new for w in windows) + self.max_delay
        text = self._encode_text([r.prompt for r in padded], bucket)
        if self.melody is None:
            decoder = self._decoder(2 * rows, bucket, longest)
            decoder.set_text(*text)
        else:  # the prefix is set per window: each hears the melody from its own start
            decoder = self._decoder(2 * rows, 0, longest, self.chroma_length + bucket)
        sampler = GuidedSampler(batch, self.device)
        codes = torch.empty((rows, self.num_codebooks, 0), dtype=torch.long, device=self.device)
        if primed is not None:
            primed = primed.to(self.device, torch.long)
            codes = torch.cat([primed, primed[:1].expand(rows - len(batch), -1, -1)])
        for plan in windows:
            if self.melody is not None:
                start_frame = codes.shape[-1] - plan.prompt
                decoder.set_prefix(self._melody_prefix(padded, text[0], start_frame * self.hop))
            prompt = codes[:, :, codes.shape[-1] - plan.prompt :] if plan.prompt else codes[:, :, :0]
            new = self._decode_window(decoder, sampler, prompt, plan.new, step_done)
            codes = torch.cat([codes, new], dim=-1)
        return codes[: len(batch)]

    def _melody_prefix(self, padded: list[GenerationRequest], text: torch.Tensor, offset: int) -> torch.Tensor:
        """A melody model's prefix for one window (2 * rows, chroma_length + text, hidden): each
        track's chroma from ``offset`` samples into its melody (looped), then its text; the
        unconditional rows get the null chroma (bin 0 lit, as transformers' ``generate``) and
        no text. A track without a melody gets the null chroma in both halves."""
        assert self.melody is not None
        null = torch.zeros((1, self.melody.num_chroma), device=self.device)
        null[:, 0] = 1
        audio = []
        for request in padded:  # one row at a time: a row never depends on its neighbours
            if request.melody is None or request.melody.size == 0:
                audio.append(self._chroma_states(null))
            else:
                looped = np.roll(request.melody, -(offset % request.melody.size))
                audio.append(self._chroma_states(chroma(looped, self.melody).to(self.device)))
        audio += [self._chroma_states(null)] * len(padded)
        return torch.cat([torch.stack(audio), text], dim=1)

    def _chroma_states(self, frames: torch.Tensor) -> torch.Tensor:
        """Projected chroma (chroma_length, hidden): repeated or cut to ``chroma_length`` as transformers does."""
        states = frames.to(self.decoder_dtype)[None]
        proj = getattr(self.model, "audio_enc_to_dec_proj", None)
        if proj is not None:
            states = proj(states)
        if states.shape[1] < self.chroma_length:
            states = states.repeat(1, math.ceil(self.chroma_length / states.shape[1]), 1)
        return states[0, : self.chroma_length]

    def _decoder(self, rows: int, text_len: int, max_len: int, prefix_len: int = 0) -> StepDecoder:
        """The step decoder for these shapes; kept (with its CUDA graphs) while they repeat."""
        if self._step_decoder is None or not self._step_decoder.fits(rows, text_len, max_len, prefix_len):
            self._step_decoder = self._graphs = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if self._layers is None:
                self._layers = fuse_layers(self.model.decoder)
            self._step_decoder = StepDecoder(self.model.decoder, self._layers, rows, text_len, max_len, prefix_len)
            if self.cuda_graphs:
                self._graphs = GraphedSteps(self._step_decoder, self.num_codebooks)
        return self._step_decoder

    def _delay_layout(self, prompt: torch.Tensor, new_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The delayed token grid of one window and which cells are free to sample.

        Position 0 holds the start token; codebook ``c``'s frame ``f`` sits at position
        ``1 + f + delay[c]``; cells outside a codebook's span hold the pad token. Prompt
        frames are written in place and are therefore never resampled.
        """
        batch, k, prompt_frames = prompt.shape
        length = 1 + prompt_frames + new_frames + self.max_delay
        grid = torch.full((batch, k, length), self.pad_token, dtype=torch.long, device=self.device)
        free = torch.zeros((k, length), dtype=torch.bool, device=self.device)
        for c, d in enumerate(self.delays):
            grid[:, c, 1 + d : 1 + d + prompt_frames] = prompt[:, c]
            free[c, 1 + d + prompt_frames : 1 + d + prompt_frames + new_frames] = True
        grid[:, :, 0] = self.start_token
        return grid, free

    def _decode_window(
        self, decoder: StepDecoder, sampler: GuidedSampler, prompt: torch.Tensor, new_frames: int, step_done
    ) -> torch.Tensor:
        """Generate ``new_frames`` frames after ``prompt`` (rows, K, P); return them (rows, K, new).

        The prompt (start token and carried-over frames) is prefilled in one pass; each
        later step feeds the token just sampled. Nothing here waits for the GPU.
        """
        grid, free = self._delay_layout(prompt, new_frames)
        rows, start = grid.shape[0], 1 + prompt.shape[-1]
        # Positions count a melody model's prefix (0 without one).
        positions = torch.arange(grid.shape[-1], device=self.device) + decoder.prefix_len

        def doubled(tokens: torch.Tensor) -> torch.Tensor:  # conditional rows, then unconditional
            return torch.cat([tokens, tokens], dim=0)

        logits = decoder.forward(
            doubled(grid[:, :, :start]), positions[:start], kv_length(decoder.prefix_len + start - 1, decoder.max_len)
        )
        for position in range(start, grid.shape[-1]):
            if position > start:
                last = position - 1
                logits = self._step(decoder, doubled(grid[:, :, last:position]), positions, last)
            column = sampler(logits, rows)
            if rows > column.shape[0]:
                column = torch.cat([column, column[:1].expand(rows - column.shape[0], -1)])
            grid[:, :, position] = torch.where(free[:, position], column, grid[:, :, position])
            step_done()
        return torch.stack([grid[:, c, start + d : start + d + new_frames] for c, d in enumerate(self.delays)], dim=1)

    def _step(self, decoder: StepDecoder, tokens: torch.Tensor, positions: torch.Tensor, last: int) -> torch.Tensor:
        """Logits after feeding ``tokens`` at position ``last`` of the window (after the
        decoder's prefix): from a CUDA graph when we can."""
        if self._graphs is not None:
            try:
                return self._graphs.step(tokens, decoder.prefix_len + last)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as exc:  # a GPU or torch build that cannot capture: decode eagerly
                log.warning("CUDA graph capture failed (%s); decoding without CUDA graphs", exc)
                self._graphs, self.cuda_graphs = None, False
        return decoder.forward(
            tokens, positions[last : last + 1], kv_length(decoder.prefix_len + last, decoder.max_len)
        )

    def _codes_to_audio(self, codes: torch.Tensor) -> np.ndarray:
        """EnCodec decode (fp32) of (B, K, T) codes to float32 (B, channels, samples).

        One row at a time: EnCodec's convolutions and LSTM give last-bit differences
        between batch sizes, and a track must not change with its batch. Decoding is a
        small fraction of the time spent on the tokens.
        """
        encodec = self.model.audio_encoder
        rows = []
        for row in codes:
            if self.channels == 1:
                audio = encodec.decode(row[None, None], audio_scales=[None]).audio_values
            else:
                left = encodec.decode(row[None, None, 0::2], audio_scales=[None]).audio_values
                right = encodec.decode(row[None, None, 1::2], audio_scales=[None]).audio_values
                audio = torch.cat([left, right], dim=1)
            rows.append(audio[0].float().cpu().numpy())
        return np.stack(rows)
