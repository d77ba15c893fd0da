"""MusicGen's decoder as a step function over preallocated buffers.

Why not ``model.decoder(...)`` with a KV cache object: transformers' forward grows a
dynamic cache, builds masks and dispatches through Python layers on every step, so a
decoding step costs 10-20 ms of host work whatever the GPU (see shared/notes). This
module runs the same arithmetic on transformers' own weights with shapes fixed for a
whole batch: a static self-attention cache, cross-attention keys and values projected
once per batch, and the position passed as a tensor. Fixed shapes make one step
capturable as a CUDA graph (``GraphedSteps``), which replays the whole step as a single
launch: on an H200 that made a step 4-5x faster than the same code run eagerly
(bench/RESULTS.md, section 4).

The layer arithmetic mirrors ``MusicgenDecoderLayer`` (pre-norm self-attention,
cross-attention, feed-forward) and is checked against it on the CPU by the tests.

MusicGen-Melody has no cross-attention: its conditioning (the projected chroma, then the
projected text) is *prepended* to the decoder's input embeddings and attended causally
like tokens. A ``StepDecoder`` with ``prefix_len`` runs that model: ``set_prefix`` prefills
the conditioning into the first ``prefix_len`` positions of the self-attention cache, and
tokens sit after it (their positions, as transformers counts them, include the prefix).
Shapes stay fixed per batch, so the CUDA graph path is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Self-attention reads the cache up to the next multiple of this many positions, so a
#: step pays for the keys written so far (not the whole window) with few distinct shapes.
KV_BUCKET = 256


@dataclass(frozen=True)
class LayerWeights:
    """One decoder layer's weights arranged for few kernels per step: the self-attention
    projections as one matrix, residual additions folded into the output GEMMs."""

    self_norm: torch.nn.Module
    qkv: torch.Tensor  # (3 * hidden, hidden): q, k and v projections stacked
    self_out: torch.Tensor
    #: The cross-attention (``None`` in a MusicGen-Melody, which has none).
    cross_norm: torch.nn.Module | None
    cross_q: torch.Tensor | None
    cross_k: torch.Tensor | None
    cross_v: torch.Tensor | None
    cross_out: torch.Tensor | None
    ffn_norm: torch.nn.Module
    fc1: torch.Tensor
    activation: torch.nn.Module
    fc2: torch.Tensor


def fuse_layers(lm: torch.nn.Module) -> list[LayerWeights]:
    """``LayerWeights`` for every layer of a ``MusicgenForCausalLM`` (or ``MusicgenMelodyForCausalLM``).

    The stacked q/k/v matrix becomes the storage of transformers' own three projections
    (they are rebound as views of it), so fusing costs no extra memory.
    """
    layers = []
    with torch.inference_mode(False), torch.no_grad():
        for layer in lm.model.decoder.layers:
            sa, ca = layer.self_attn, getattr(layer, "encoder_attn", None)
            hidden = sa.q_proj.weight.shape[0]
            qkv = torch.cat([sa.q_proj.weight, sa.k_proj.weight, sa.v_proj.weight])
            for i, proj in enumerate((sa.q_proj, sa.k_proj, sa.v_proj)):
                proj.weight.data = qkv[i * hidden : (i + 1) * hidden]
            layers.append(
                LayerWeights(
                    layer.self_attn_layer_norm,
                    qkv,
                    sa.out_proj.weight,
                    getattr(layer, "encoder_attn_layer_norm", None),
                    None if ca is None else ca.q_proj.weight,
                    None if ca is None else ca.k_proj.weight,
                    None if ca is None else ca.v_proj.weight,
                    None if ca is None else ca.out_proj.weight,
                    layer.final_layer_norm,
                    layer.fc1.weight,
                    layer.activation_fn,
                    layer.fc2.weight,
                )
            )
    return layers


class StepDecoder:
    """The decoder of a ``MusicgenForCausalLM`` with a static KV cache for ``rows`` rows.

    ``rows`` counts the classifier-free-guidance batch (conditional rows, then the
    unconditional ones), ``text_len`` the padded prompt length and ``max_len`` the longest
    window in positions (start token, prompt frames, new frames, delay). ``layers`` comes
    from ``fuse_layers`` (made once per model and shared by every ``StepDecoder``).

    ``prefix_len`` > 0: a MusicGen-Melody's decoder, its conditioning prepended
    (``set_prefix``) instead of cross-attended; ``text_len`` is then 0 and tokens sit at
    positions ``prefix_len`` and after.
    """

    def __init__(
        self,
        lm: torch.nn.Module,
        layers: list[LayerWeights],
        rows: int,
        text_len: int,
        max_len: int,
        prefix_len: int = 0,
    ):
        core = lm.model.decoder
        weight = core.embed_tokens[0].weight
        self.device, self.dtype = weight.device, weight.dtype
        self.layers = layers
        self.final_norm = core.layer_norm
        self.heads = [head.weight for head in lm.lm_heads]
        self.embeddings = [embed.weight for embed in core.embed_tokens]
        self.positions = core.embed_positions.weights
        self.hidden = core.config.hidden_size
        # A multiple of 16 keeps every attention mask aligned for the fused attention kernels.
        self.rows, self.text_len, self.prefix_len = rows, text_len, prefix_len
        self.max_len = math.ceil((prefix_len + max_len) / 16) * 16
        self.num_heads = core.config.num_attention_heads
        self.head_dim = self.hidden // self.num_heads
        shape = (len(layers), rows, self.num_heads, self.max_len, self.head_dim)
        self.self_k = torch.zeros(shape, dtype=self.dtype, device=self.device)
        self.self_v = torch.zeros(shape, dtype=self.dtype, device=self.device)
        cross = (len(layers), rows, self.num_heads, text_len, self.head_dim)
        self.cross_k = torch.zeros(cross, dtype=self.dtype, device=self.device)
        self.cross_v = torch.zeros(cross, dtype=self.dtype, device=self.device)
        self.cross_bias = torch.zeros((rows, 1, 1, text_len), dtype=self.dtype, device=self.device)

    def fits(self, rows: int, text_len: int, max_len: int, prefix_len: int = 0) -> bool:
        return (
            rows == self.rows
            and text_len == self.text_len
            and prefix_len == self.prefix_len
            and prefix_len + max_len <= self.max_len
        )

    def set_prefix(self, states: torch.Tensor) -> None:
        """Prefill a MusicGen-Melody's conditioning (rows, prefix_len, hidden): the projected
        chroma then the projected text, as transformers concatenates them, attended causally
        like tokens at positions 0 .. prefix_len - 1."""
        if states.shape[:2] != (self.rows, self.prefix_len):
            raise ValueError(f"prefix of shape {tuple(states.shape)} for {self.rows} rows of {self.prefix_len}")
        positions = torch.arange(self.prefix_len, device=self.device)
        hidden = (states.to(self.dtype) + self.positions[: self.prefix_len]).reshape(-1, self.hidden)
        self._layers_forward(hidden, positions, kv_length(self.prefix_len - 1, self.max_len))

    def set_text(self, states: torch.Tensor, mask: torch.Tensor) -> None:
        """Project the text states (rows, text_len, hidden) into every layer's cross K/V."""
        for i, layer in enumerate(self.layers):
            assert layer.cross_k is not None and layer.cross_v is not None, "a model without cross-attention"
            self.cross_k[i].copy_(self._split(F.linear(states, layer.cross_k), states.shape[1]))
            self.cross_v[i].copy_(self._split(F.linear(states, layer.cross_v), states.shape[1]))
        allowed = mask.bool()
        # A row with no text at all (the unconditional half) has all-zero keys and values:
        # attending to every position gives the zero vector, as transformers' masking does.
        allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
        bias = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        self.cross_bias.copy_(bias.masked_fill(~allowed, float("-inf"))[:, None, None, :])

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, kv_len: int) -> torch.Tensor:
        """Logits (rows, codebooks, vocab) of the last of ``tokens`` (rows, codebooks, T).

        ``positions`` (T,) says where the tokens sit; their keys and values are written to
        the cache there, and attention reads the cache's first ``kv_len`` positions. The
        hidden state is kept as (rows * T, hidden) so residuals fold into ``addmm``.
        """
        steps = positions.shape[0]
        embedded = [F.embedding(tokens[:, c], table) for c, table in enumerate(self.embeddings)]
        hidden = embedded[0]
        for more in embedded[1:]:  # summed in order, as transformers does
            hidden = hidden + more
        hidden = (hidden + self.positions.index_select(0, positions)).view(-1, self.hidden)
        hidden = self._layers_forward(hidden, positions, kv_len)
        last = self.final_norm(hidden.view(self.rows, steps, self.hidden)[:, -1])
        return torch.stack([F.linear(last, head) for head in self.heads], dim=1)

    def _layers_forward(self, hidden: torch.Tensor, positions: torch.Tensor, kv_len: int) -> torch.Tensor:
        """The decoder layers over (rows * T, hidden) at ``positions``, writing the cache."""
        steps = positions.shape[0]
        keys = torch.arange(kv_len, device=self.device)
        causal = torch.zeros((steps, kv_len), dtype=self.dtype, device=self.device)
        causal = causal.masked_fill(keys[None, :] > positions[:, None], float("-inf"))
        for i, layer in enumerate(self.layers):
            qkv = F.linear(layer.self_norm(hidden), layer.qkv)
            q, k, v = (self._split(part, steps) for part in qkv.split(self.hidden, dim=-1))
            self.self_k[i].index_copy_(2, positions, k)
            self.self_v[i].index_copy_(2, positions, v)
            out = F.scaled_dot_product_attention(
                q, self.self_k[i, :, :, :kv_len], self.self_v[i, :, :, :kv_len], attn_mask=causal
            )
            hidden = torch.addmm(hidden, self._merge(out), layer.self_out.t())
            if self.text_len:
                assert layer.cross_norm is not None and layer.cross_q is not None and layer.cross_out is not None
                q = self._split(F.linear(layer.cross_norm(hidden), layer.cross_q), steps)
                out = F.scaled_dot_product_attention(q, self.cross_k[i], self.cross_v[i], attn_mask=self.cross_bias)
                hidden = torch.addmm(hidden, self._merge(out), layer.cross_out.t())
            inner = layer.activation(F.linear(layer.ffn_norm(hidden), layer.fc1))
            hidden = torch.addmm(hidden, inner, layer.fc2.t())
        return hidden

    # ----------------------------------------------------------------- helpers
    def _split(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """(rows * T, hidden) or (rows, T, hidden) -> (rows, heads, T, head_dim)."""
        return x.reshape(self.rows, steps, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        """(rows, heads, T, head_dim) -> (rows * T, hidden)."""
        return x.transpose(1, 2).reshape(-1, self.hidden)


def kv_length(position: int, max_len: int) -> int:
    """Cache positions a step at ``position`` reads: rounded up to ``KV_BUCKET``."""
    return min(max_len, math.ceil((position + 1) / KV_BUCKET) * KV_BUCKET)


class GraphedSteps:
    """One-token steps of a ``StepDecoder`` replayed from CUDA graphs, one per KV bucket.

    Inputs are copied into static buffers before each replay; the graph writes the
    logits into its own static output. The first step of a bucket runs twice eagerly on
    a side stream (as CUDA graph capture requires) and is then captured; the repeated
    work is idempotent (the same keys written to the same cache slot).
    """

    def __init__(self, decoder: StepDecoder, codebooks: int):
        self.decoder = decoder
        self.tokens = torch.zeros((decoder.rows, codebooks, 1), dtype=torch.long, device=decoder.device)
        self.position = torch.zeros(1, dtype=torch.long, device=decoder.device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = None

    def step(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        self.tokens.copy_(tokens)
        self.position.fill_(position)
        kv_len = kv_length(position, self.decoder.max_len)
        graph, logits = self.graphs.get(kv_len) or self._capture(kv_len)
        graph.replay()
        return logits

    def _capture(self, kv_len: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self.decoder.forward(self.tokens, self.position, kv_len)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self.decoder.forward(self.tokens, self.position, kv_len)
        self.pool = graph.pool()
        self.graphs[kv_len] = (graph, logits)
        return graph, logits
