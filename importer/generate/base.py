"""The backend seam: what the build asks of a music generator, and nothing more.

The build hands a backend a list of requests that share one model and gets raw audio
back (float32, shape ``(channels, samples)`` at the backend's native rate). Everything
about a particular library (transformers today, audiocraft perhaps later) stays behind
this interface. This module imports nothing heavy so that planning code can name these
types without paying for torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

#: ``model_type`` of the MusicGen-Melody checkpoints (``generation.melody`` needs one).
MELODY_MODEL_TYPE = "musicgen_melody"

#: MusicGen was trained on 30 s excerpts: longer tracks are generated window by window.
DEFAULT_WINDOW_SECONDS = 30.0
#: audiocraft's ``extend_stride``: each new window advances 18 s of a 30 s window, so
#: the model hears the last 12 s of what it made before. Kept as a fraction of the window.
DEFAULT_STRIDE_FRACTION = 0.6

#: Called as ``progress(track_name, steps_done, steps_total)`` after each decoding step.
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class GenerationRequest:
    """One track to generate: everything that decides its audio, already validated."""

    name: str
    prompt: str
    duration: float
    seed: int
    temperature: float
    top_k: int
    top_p: float
    guidance_scale: float
    window: float = DEFAULT_WINDOW_SECONDS
    window_stride: float = DEFAULT_WINDOW_SECONDS * DEFAULT_STRIDE_FRACTION
    #: Audio the track continues: float32 ``(channels, samples)`` at the backend's rate and
    #: channel count. Its codes prime the first window.
    primer: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: With a primer: the audio returned starts with the primer's resynthesis (``duration``
    #: covers both); without, it is ``duration`` seconds of new music after it.
    include_prompt: bool = False
    #: The melody a MusicGen-Melody follows: float32 mono ``(samples,)`` at the backend's
    #: ``sample_rate`` (its chroma's rate too); its chroma conditions every window. ``None``:
    #: text only. A model that takes no melody fails the request.
    melody: np.ndarray | None = field(default=None, compare=False, repr=False)


class Backend(Protocol):
    """A loaded generator. Load once, call ``generate`` many times, ``close`` to free it."""

    #: Native output rate of the raw audio (32 kHz for MusicGen).
    sample_rate: int
    #: 1 for mono models, 2 for stereo ones.
    channels: int
    #: Short description for logs: model, device, dtype.
    description: str

    def generate(
        self, requests: Sequence[GenerationRequest], progress: ProgressFn | None = None
    ) -> list[np.ndarray | Exception]:
        """Audio for each request, in order; a failed request gets its exception instead."""
        ...

    def close(self) -> None:
        """Release the model (and GPU memory)."""
        ...
