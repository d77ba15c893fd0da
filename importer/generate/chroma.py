"""The chroma a MusicGen-Melody model is conditioned on, without torchaudio.

transformers' ``MusicgenMelodyFeatureExtractor`` computes its spectrogram with torchaudio,
which does not load beside every torch build (the CPU wheels here, for one). This is the
same computation with torch alone, step for step (``_torch_extract_fbank_features``):

* audio shorter than ``n_fft`` is zero-padded on both sides to ``n_fft`` samples;
* a power spectrogram as ``torchaudio.transforms.Spectrogram(n_fft, win_length=n_fft,
  hop_length, power=2, center=True, normalized=True)``: periodic Hann window, reflect
  padding, divided by the window's L2 norm before squaring;
* transformers' ``chroma_filter_bank`` (librosa's, starting at C) sums it into 12 bins;
* each frame is normalised by its maximum and reduced to a one-hot of its loudest bin
  (a silent frame lights bin 0, C, as the extractor's argmax does).

The tests pin it against the extractor's own code (given this spectrogram) and on a pure
A4, which must light the A bin.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

#: Pitch classes in the order of the chroma bins (``start_at_c_chroma``).
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@dataclass(frozen=True)
class ChromaSettings:
    """The feature extractor's settings (its ``preprocessor_config.json``); defaults as transformers'."""

    sampling_rate: int = 32_000
    n_fft: int = 16_384
    hop_length: int = 4_096
    num_chroma: int = 12
    chunk_length: int = 30

    @classmethod
    def from_dict(cls, values: dict) -> ChromaSettings:
        known = {
            k: int(values[k])
            for k in ("sampling_rate", "n_fft", "hop_length", "num_chroma", "chunk_length")
            if k in values
        }
        return cls(**known)

    @property
    def max_samples(self) -> int:
        """The extractor truncates audio to ``chunk_length`` seconds."""
        return self.chunk_length * self.sampling_rate


@lru_cache(maxsize=4)
def _filters(sampling_rate: int, n_fft: int, num_chroma: int) -> torch.Tensor:
    from transformers.audio_utils import chroma_filter_bank

    bank = chroma_filter_bank(sampling_rate=sampling_rate, num_frequency_bins=n_fft, tuning=0, num_chroma=num_chroma)
    return torch.from_numpy(bank).float()


def power_spectrogram(waveform: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """torchaudio's ``Spectrogram(power=2, normalized=True, center=True)`` of (batch, samples):
    (batch, n_fft // 2 + 1, frames)."""
    window = torch.hann_window(n_fft, dtype=waveform.dtype, device=waveform.device)
    spec = torch.stft(
        waveform,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    spec = spec / window.pow(2.0).sum().sqrt()
    return spec.abs().pow(2.0)


def chroma(audio: np.ndarray, settings: ChromaSettings) -> torch.Tensor:
    """The one-hot chroma (frames, num_chroma), float32, of mono audio at ``settings.sampling_rate``."""
    waveform = torch.from_numpy(np.ascontiguousarray(audio[: settings.max_samples], dtype=np.float32))[None]
    length = waveform.shape[-1]
    if length < settings.n_fft:
        pad = settings.n_fft - length
        waveform = torch.nn.functional.pad(waveform, (pad // 2, pad // 2 + pad % 2), "constant", 0)
    spec = power_spectrogram(waveform, settings.n_fft, settings.hop_length)
    filters = _filters(settings.sampling_rate, settings.n_fft, settings.num_chroma)
    raw = torch.einsum("cf,...ft->...ct", filters, spec)
    norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
    one_hot = torch.zeros_like(norm)
    one_hot.scatter_(dim=-1, index=norm.argmax(-1, keepdim=True), value=1)
    return one_hot[0]
