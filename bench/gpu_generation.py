"""Benchmark 4: MusicGen generation on a GPU, the naive baseline against the product's path.

Full-size musicgen-small and musicgen-medium architectures with random weights (no hub
access here; random weights run exactly as fast as trained ones) are built directly on
the device. For each size and length:

- naive: fp32 weights, batch 1, plain ``model.generate()`` (transformers' own loop, the
  way the product's origin script ran it), sampling with top_k 250 and guidance 3;
- product: ``MusicGenBackend`` as the build uses it (fp16 decoder, static KV cache, one
  CUDA graph per step, per-track random streams), at batch 1, 4 and 16; its first call
  (which captures the graphs) is reported apart from the steady state.

Figures: wall time, decoder steps per second, tokens per second (steps x codebooks x
tracks), real-time factor (seconds of audio made per second, all tracks together), peak
GPU memory, and the fraction of the weight-bandwidth limit: one step must read every fp16
decoder weight once, so steps/s can be at most (measured copy bandwidth) / (weight bytes).
It also checks on the GPU that a track sounds the same alone and in a batch, and that a
graphed run equals an eager one.

    python bench/gpu_generation.py [--sizes small medium] [--seconds 10 30] [--batches 1 4 16] [--json FILE]
    python bench/gpu_generation.py --sizes tiny --seconds 1 --batches 1 2 --device cpu   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importer.generate.base import GenerationRequest  # noqa: E402
from importer.generate.musicgen import MusicGenBackend  # noqa: E402
from importer.generate.tiny import build_tiny_model, build_tokenizer, finish_random_model  # noqa: E402

#: Decoder shapes of the released checkpoints (hidden, layers, heads, ffn); all use T5-base.
SIZES = {"small": (1024, 24, 16, 4096), "medium": (1536, 48, 24, 6144), "large": (2048, 48, 32, 8192)}
PROMPT = "calm synthwave, D minor, 90 BPM, warm pads, slow arpeggios"
FRAME_RATE = 50


def random_model(size: str, device: torch.device):
    """(model, tokenizer) with the named architecture and random weights, built on ``device``."""
    if size == "tiny":
        model, tokenizer = build_tiny_model()
        return model.to(device), tokenizer
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    hidden, layers, heads, ffn = SIZES[size]
    tokenizer = build_tokenizer()
    text = T5Config(
        vocab_size=32128,
        d_model=768,
        d_kv=64,
        d_ff=3072,
        num_layers=12,
        num_heads=12,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    audio = EncodecConfig(
        sampling_rate=32000,
        audio_channels=1,
        target_bandwidths=[2.2],
        upsampling_ratios=[8, 5, 4, 4],
        codebook_size=2048,
        hidden_size=128,
        num_filters=64,
        num_lstm_layers=2,
        codebook_dim=128,
        use_causal_conv=False,
        normalize=False,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        max_position_embeddings=2048,
        num_hidden_layers=layers,
        ffn_dim=ffn,
        num_attention_heads=heads,
        hidden_size=hidden,
        num_codebooks=4,
        audio_channels=1,
        pad_token_id=2048,
        bos_token_id=2048,
        dropout=0.0,
    )
    config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    torch.manual_seed(0)
    with device:
        model = MusicgenForConditionalGeneration(config)
    finish_random_model(model)
    return model, tokenizer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def copy_bandwidth(device: torch.device) -> float | None:
    """Bytes per second of a device-to-device copy, counting bytes read and written."""
    if device.type != "cuda":
        return None
    src = torch.empty(2**30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(10):
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - start)
    del src, dst
    return 2 * 2**30 / statistics.median(times)


def decoder_weight_bytes(model, dtype_bytes: int = 2) -> int:
    return sum(p.numel() for p in model.decoder.parameters()) * dtype_bytes


def requests(n: int, seconds: float, seed: int = 0) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            name=f"t{i}",
            prompt=f"{PROMPT} {i}",
            duration=seconds,
            seed=seed + i,
            temperature=1.1,
            top_k=250,
            top_p=0.0,
            guidance_scale=3.0,
        )
        for i in range(n)
    ]


def figures(case: dict, wall: float, steps: int, tracks: int, seconds: float, limit_steps_per_s: float | None):
    case.update(
        wall_s=round(wall, 3),
        steps=steps,
        steps_per_s=round(steps / wall, 1),
        tokens_per_s=round(steps * 4 * tracks / wall, 1),
        rtf=round(seconds * tracks / wall, 2),
    )
    if limit_steps_per_s:
        case["fraction_of_weight_limit"] = round(steps / wall / limit_steps_per_s, 3)
    return case


def run_naive(model, tokenizer, device, seconds: float, limit) -> dict:
    """transformers' generate(), fp32, batch 1, as a script would call it."""
    inputs = tokenizer([PROMPT], return_tensors="pt").to(device)
    steps = round(seconds * FRAME_RATE) + 3  # the delay pattern adds 3 steps
    reset_peak(device)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(**inputs, do_sample=True, guidance_scale=3.0, top_k=250, temperature=1.1, max_new_tokens=steps)
    sync(device)
    case = {"path": "naive generate fp32", "batch": 1, "seconds": seconds, "peak_gib": peak_gib(device)}
    return figures(case, time.perf_counter() - start, steps, 1, seconds, limit)


def run_product(backend: MusicGenBackend, device, batch: int, seconds: float, limit, label: str) -> dict:
    steps = round(seconds * FRAME_RATE) + 3
    reset_peak(device)
    start = time.perf_counter()
    out = backend.generate(requests(batch, seconds))
    sync(device)
    wall = time.perf_counter() - start
    errors = [str(o) for o in out if isinstance(o, Exception)]
    case = {
        "path": label,
        "batch": batch,
        "rows": backend.max_batch if backend.fixed_batch else batch,
        "seconds": seconds,
        "peak_gib": peak_gib(device),
        "errors": errors,
    }
    return figures(case, wall, steps, batch, seconds, limit)


def invariance_checks(model, tokenizer, device) -> dict:
    """Same seed alone and batched, graphed and eager: identical audio?"""
    track = requests(1, 2.0, seed=11)[0]
    others = requests(3, 2.0, seed=20)
    fixed = MusicGenBackend(model, tokenizer, str(device), max_batch=4, name="check")
    alone = fixed.generate([track])[0]
    batched = fixed.generate([others[0], track, *others[1:]])[1]
    again = fixed.generate([track])[0]
    fixed.close()
    eager = MusicGenBackend(model, tokenizer, str(device), max_batch=4, name="check", cuda_graphs=False)
    eager_alone = eager.generate([track])[0]
    eager.close()
    unpadded = MusicGenBackend(model, tokenizer, str(device), max_batch=4, name="check", fixed_batch=False)
    u_alone = unpadded.generate([track])[0]
    u_batched = unpadded.generate([others[0], track, *others[1:]])[1]
    unpadded.close()
    same = lambda a, b: bool(a.shape == b.shape and (a == b).all())  # noqa: E731
    return {
        "repeat_identical": same(alone, again),
        "alone_vs_batched_fixed_rows": same(alone, batched),
        "graphed_vs_eager": same(alone, eager_alone),
        "graphed_vs_eager_max_abs_diff": float(abs(alone - eager_alone).max()),
        "alone_vs_batched_unpadded": same(u_alone, u_batched),
    }


def profile_steps(model, tokenizer, device) -> str:
    """Where a step's GPU time goes: kernels of 1 s of eager steps (no graph), batch 1."""
    from torch.profiler import ProfilerActivity, profile

    backend = MusicGenBackend(model, tokenizer, str(device), max_batch=1, name="profile", cuda_graphs=False)
    backend.generate(requests(1, 1.0))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        backend.generate(requests(1, 1.0))
        sync(device)
    backend.close()
    events = prof.key_averages()
    kernels = sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    table = events.table(sort_by="cuda_time_total", row_limit=25)
    text = f"CUDA kernels in 1 s of audio (53 steps + T5 + EnCodec): {kernels}\n{table}\n"
    print(text, flush=True)
    return text


def compiled_case(model, tokenizer, device, seconds: float, limit) -> dict:
    """The step function compiled by torch.compile (Inductor fuses the small kernels), then
    captured by our CUDA graphs as usual. Compile time is reported apart."""
    from importer.generate import decoder as decoder_module

    original = decoder_module.StepDecoder.forward
    decoder_module.StepDecoder.forward = torch.compile(original, dynamic=False)
    try:
        backend = MusicGenBackend(model, tokenizer, str(device), max_batch=1, name="compiled")
        start = time.perf_counter()
        backend.generate(requests(1, seconds))
        sync(device)
        first = time.perf_counter() - start
        case = run_product(backend, device, 1, seconds, limit, "product + torch.compile")
        backend.close()
    finally:
        decoder_module.StepDecoder.forward = original
    case["first_call_incl_compile_s"] = round(first, 1)
    return case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "medium"])
    parser.add_argument("--seconds", nargs="+", type=float, default=[10.0, 30.0])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--naive-seconds",
        nargs="*",
        type=float,
        help="lengths for the fp32 generate() baseline (default: --seconds; none: skip)",
    )
    parser.add_argument("--profile", type=Path, help="profile eager steps of the first size; write the table here")
    parser.add_argument(
        "--compile", action="store_true", help="last: the first size at batch 1 with the step function torch.compile'd"
    )
    parser.add_argument("--json", type=Path, help="write every result here as it comes")
    args = parser.parse_args()
    device = torch.device(args.device)
    doc: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cases": [],
        "checks": {},
    }
    import transformers

    doc["transformers"] = transformers.__version__
    bandwidth = copy_bandwidth(device)
    doc["copy_bandwidth_tb_s"] = round(bandwidth / 1e12, 2) if bandwidth else None
    print(json.dumps({k: v for k, v in doc.items() if k not in ("cases", "checks")}), flush=True)

    def record(case: dict) -> None:
        doc["cases"].append(case)
        print(json.dumps(case), flush=True)
        if args.json:
            args.json.write_text(json.dumps(doc, indent=1))

    longest = max(args.seconds)
    for size in args.sizes:
        start = time.perf_counter()
        model, tokenizer = random_model(size, device)
        weights = decoder_weight_bytes(model)
        limit = bandwidth / weights if bandwidth else None
        print(
            f"# {size}: built in {time.perf_counter() - start:.1f} s; decoder {weights / 2**30:.2f} GiB fp16, "
            f"weight-bandwidth limit {limit or 0:.0f} steps/s",
            flush=True,
        )
        base = {
            "size": size,
            "decoder_fp16_gib": round(weights / 2**30, 3),
            "limit_steps_per_s": round(limit, 1) if limit else None,
        }
        naive_seconds = args.seconds if args.naive_seconds is None else args.naive_seconds
        for seconds in naive_seconds:
            try:
                record({**base, **run_naive(model, tokenizer, device, seconds, limit)})
            except Exception as exc:  # keep going: the other cases still say something
                record({**base, "path": "naive generate fp32", "seconds": seconds, "error": repr(exc)})
        for batch in args.batches:
            backend = MusicGenBackend(model, tokenizer, str(device), max_batch=batch, name=size)
            try:
                first = run_product(backend, device, batch, longest, limit, "product, first call (captures)")
                record({**base, **first})
                for seconds in sorted(args.seconds, reverse=True):
                    record({**base, **run_product(backend, device, batch, seconds, limit, "product")})
            except Exception as exc:
                record({**base, "path": "product", "batch": batch, "error": repr(exc)})
            backend.close()
        if 1 in args.batches:
            for label, kwargs in (
                ("product eager (no CUDA graphs)", {"cuda_graphs": False, "max_batch": 1}),
                ("product, 1 track padded to 8 rows", {"max_batch": 8}),
            ):
                backend = MusicGenBackend(model, tokenizer, str(device), name=size, **kwargs)
                try:
                    seconds = min(args.seconds)
                    run_product(backend, device, 1, min(1.0, seconds), limit, label)  # warm-up / capture
                    record({**base, **run_product(backend, device, 1, seconds, limit, label)})
                except Exception as exc:
                    record({**base, "path": label, "error": repr(exc)})
                backend.close()
        if size == args.sizes[0]:
            try:
                doc["checks"] = invariance_checks(model, tokenizer, device)
            except Exception as exc:
                doc["checks"] = {"error": repr(exc)}
            print(json.dumps({"checks": doc["checks"]}), flush=True)
            if args.profile:
                try:
                    args.profile.write_text(profile_steps(model, tokenizer, device))
                except Exception as exc:
                    print(f"profile failed: {exc!r}", flush=True)
            kept = (model, tokenizer, base, limit)  # kept for the compile case, which runs last
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.compile:
        model, tokenizer, base, limit = kept
        try:
            record({**base, **compiled_case(model, tokenizer, device, min(args.seconds), limit)})
        except Exception as exc:
            record({**base, "path": "product + torch.compile", "error": repr(exc)[:2000]})
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
