"""Token sampling with one random stream per track.

``transformers``' sampler draws from the global RNG for the whole batch, so a track would
sound different alone and in a batch. Here each row owns a ``torch.Generator`` seeded from
its track's seed and draws the same amount of noise at every step, whatever else is in
the batch: Gumbel-max (argmax of logits + Gumbel noise) is an exact sample from the
softmax and needs no host round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import GenerationRequest

_TINY = 1e-10


def guided_logits(cond: torch.Tensor, uncond: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + (cond - uncond) * scale`` per row.

    ``cond`` and ``uncond`` are ``(B, K, V)``, ``guidance`` is ``(B,)``; returns float32.
    """
    cond, uncond = cond.float(), uncond.float()
    return uncond + (cond - uncond) * guidance.view(-1, 1, 1)


class GuidedSampler:
    """Guidance and sampling for a batch of requests, each with its own random stream."""

    def __init__(self, requests: Sequence[GenerationRequest], device: torch.device):
        self.generators = [torch.Generator(device=device).manual_seed(r.seed) for r in requests]
        self.guidance = torch.tensor([r.guidance_scale for r in requests], device=device, dtype=torch.float32)
        self.settings = [(r.temperature, r.top_k, r.top_p) for r in requests]

    def __call__(self, logits: torch.Tensor, rows: int) -> torch.Tensor:
        """Tokens (requests, K) from the logits (2 * rows, K, V) of a doubled, padded batch.

        Conditional rows come first (as transformers lays out the doubled batch); rows
        past the requests are padding and are not sampled.
        """
        n = len(self.generators)
        guided = guided_logits(logits[:n], logits[rows : rows + n], self.guidance)
        return sample_rows(guided, self.generators, self.settings)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask what may not be sampled (audiocraft's rule: ``top_p > 0`` wins over ``top_k``)."""
    if top_p > 0.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        cumulative = probs.cumsum(dim=-1)
        drop_sorted = cumulative - probs > top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))
    return logits


def sample_rows(
    logits: torch.Tensor, generators: list[torch.Generator], settings: list[tuple[float, int, float]]
) -> torch.Tensor:
    """One token per row and codebook from ``(B, K, V)`` logits; returns ``(B, K)``.

    Row ``b`` draws its noise from ``generators[b]`` and is sampled with ``settings[b]``
    = (temperature, top_k, top_p). Each generator advances by exactly ``K * V`` uniforms
    per call, also for temperature 0 (greedy), so a row's stream never depends on its
    settings or its neighbours. Rows with equal settings are filtered together.
    """
    uniform = torch.stack(
        [torch.rand(logits.shape[1:], generator=g, device=logits.device, dtype=torch.float32) for g in generators]
    )
    groups: dict[tuple[float, int, float], list[int]] = {}
    for row, setting in enumerate(settings):
        groups.setdefault(setting, []).append(row)
    if len(groups) == 1:
        return _sample(logits, uniform, *settings[0])
    tokens = torch.empty(logits.shape[:2], dtype=torch.long, device=logits.device)
    for setting, rows in groups.items():
        index = torch.tensor(rows, device=logits.device)
        tokens[index] = _sample(logits[index], uniform[index], *setting)
    return tokens


def _sample(logits: torch.Tensor, uniform: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Gumbel-max over ``(..., V)``: an exact sample of the filtered, tempered softmax."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    scaled = filter_logits(logits / temperature, top_k, top_p)
    gumbel = -torch.log(-torch.log(uniform.clamp_(_TINY, 1.0 - _TINY)))
    return (scaled + gumbel).argmax(dim=-1)
