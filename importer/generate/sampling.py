"""Token sampling with one random stream per track.

``transformers``' sampler draws from the global RNG for the whole batch, so a track would
sound different alone and in a batch. Here each row owns a ``torch.Generator`` seeded from
its track's seed and draws the same amount of noise at every step, whatever else is in
the batch: Gumbel-max (argmax of logits + Gumbel noise) is an exact sample from the
softmax and needs no host round trip.
"""

from __future__ import annotations

import torch

_TINY = 1e-10


def guided_logits(logits: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + (cond - uncond) * scale`` per row.

    ``logits`` is ``(2B, K, V)`` with the conditional rows first (as transformers lays
    out the doubled batch); ``guidance`` is ``(B,)``. Returns float32 ``(B, K, V)``.
    """
    cond, uncond = logits.float().chunk(2, dim=0)
    return uncond + (cond - uncond) * guidance.view(-1, 1, 1)


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


def sample_row(
    logits: torch.Tensor, generator: torch.Generator, temperature: float, top_k: int, top_p: float
) -> torch.Tensor:
    """Sample one token per codebook from ``(K, V)`` logits with the row's own generator.

    The generator is advanced by exactly ``K * V`` uniforms on every call, also for
    temperature 0 (greedy), so a row's stream never depends on its settings' branch.
    """
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    scaled = filter_logits(logits / temperature, top_k, top_p)
    gumbel = -torch.log(-torch.log(uniform.clamp_(_TINY, 1.0 - _TINY)))
    return (scaled + gumbel).argmax(dim=-1)
