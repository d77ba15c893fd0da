"""Convert an audiocraft MusicGen checkpoint into a model folder trackspec loads.

audiocraft (facebookresearch/audiocraft) exports a MusicGen as two files: ``state_dict.bin``
(the language model, with its training config as YAML under ``xp.cfg``) and
``compression_state_dict.bin`` (the EnCodec model, likewise). The T5 text encoder is never
in them: audiocraft loads it by name, so the caller names it (``--t5``: a folder or hub id).

The result is the transformers layout the hub's ``facebook/musicgen-*`` models use
(``MusicgenForConditionalGeneration`` saved with ``save_pretrained``, plus the T5
tokenizer), so trackspec loads it like any local model, keyed by its content digest.
No audiocraft code runs here or later: the weights are renamed from audiocraft's keys and
the configs are read from its YAML. What audiocraft's config allows but this layout
cannot express is refused, naming the config field.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import ModelError

LM_FILE = "state_dict.bin"
COMPRESSION_FILE = "compression_state_dict.bin"
#: transformers' sinusoidal position table is precomputed to this length (as on the hub).
MAX_POSITIONS = 2048
#: audiocraft's sinusoidal embedding's default ``max_period``.
SIN_MAX_PERIOD = 10_000


@dataclass(frozen=True)
class Checkpoint:
    """The two parts of an audiocraft export, with their parsed configs."""

    lm_state: dict
    lm_cfg: dict
    compression_state: dict
    compression_cfg: dict


def _unsupported(field: str, value: Any, wanted: str) -> ModelError:
    return ModelError(f"unsupported audiocraft model: {field} = {value!r} ({wanted})")


def _get(cfg: dict, dotted: str, default: Any = KeyError) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is KeyError:
                raise ModelError(f"not an audiocraft MusicGen checkpoint: its config has no {dotted}")
            return default
        node = node[part]
    return node


def _load_part(path: Path) -> tuple[dict, dict]:
    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file gets the same answer
        raise ModelError(f"{path} is not an audiocraft checkpoint file: {exc}") from exc
    if not isinstance(package, dict) or "best_state" not in package or "xp.cfg" not in package:
        raise ModelError(
            f"{path} is not an audiocraft export (it needs 'best_state' and 'xp.cfg', as "
            "audiocraft.utils.export writes them)"
        )
    state = package["best_state"]
    if isinstance(state, dict) and "model" in state and not any(k.startswith(("emb.", "encoder.")) for k in state):
        state = state["model"]  # a training checkpoint rather than an export
    cfg = package["xp.cfg"]
    if isinstance(cfg, str):
        cfg = yaml.safe_load(cfg)
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: its 'xp.cfg' is not a config mapping")
    return dict(state), cfg


def read_checkpoint(src: Path) -> Checkpoint:
    """Both parts of the export in ``src``; a clear error when it is not one."""
    src = Path(src)
    if not src.is_dir():
        raise ModelError(
            f"{src} is not a folder (an audiocraft checkpoint folder holds {LM_FILE} and {COMPRESSION_FILE})"
        )
    missing = [name for name in (LM_FILE, COMPRESSION_FILE) if not (src / name).is_file()]
    if missing:
        raise ModelError(
            f"{src} is not an audiocraft checkpoint folder: {' and '.join(missing)} missing "
            "(audiocraft's export writes both)"
        )
    lm_state, lm_cfg = _load_part(src / LM_FILE)
    comp_state, comp_cfg = _load_part(src / COMPRESSION_FILE)
    return Checkpoint(lm_state, lm_cfg, comp_state, comp_cfg)


# ----------------------------------------------------------------------- configs
def _check(cfg: dict, field: str, wanted: Any, why: str, default: Any = KeyError) -> None:
    value = _get(cfg, field, default)
    if value != wanted:
        raise _unsupported(field, value, why)


def decoder_settings(lm_cfg: dict) -> dict[str, Any]:
    """The LM's shape from ``xp.cfg``, after refusing what transformers' MusicGen lacks."""
    _check(lm_cfg, "lm_model", "transformer_lm", "only transformer_lm is supported")
    lm = _get(lm_cfg, "transformer_lm")
    prefix = "transformer_lm."
    for field, wanted, why in [
        ("norm_first", True, "MusicGen layers are pre-norm"),
        ("norm", "layer_norm", "MusicGen uses LayerNorm"),
        ("positional_embedding", "sin", "MusicGen uses sinusoidal positions"),
        ("bias_ff", False, "MusicGen's feed-forward has no bias"),
        ("bias_attn", False, "MusicGen's attention has no bias"),
        ("bias_proj", False, "MusicGen's attention output has no bias"),
        ("causal", True, "MusicGen is causal"),
        ("activation", "gelu", "MusicGen uses exact GELU"),
    ]:
        _check(lm_cfg, prefix + field, wanted, why)
    for field, wanted, why in [
        ("layer_scale", None, "no layer scale in transformers' MusicGen"),
        ("qk_layer_norm", False, "no query/key norm in transformers' MusicGen"),
        ("qk_layer_norm_cross", False, "no query/key norm in transformers' MusicGen"),
        ("kv_repeat", 1, "no grouped keys/values in transformers' MusicGen"),
        ("xpos", False, "no xpos in transformers' MusicGen"),
        ("past_context", None, "attention must see the whole window"),
        ("max_period", SIN_MAX_PERIOD, "the sinusoidal period must be 10000"),
        ("positional_scale", 1.0, "positions are added unscaled"),
    ]:
        _check(lm_cfg, prefix + field, wanted, why, default=wanted)
    channels = int(_get(lm_cfg, "channels", 1))
    if channels not in (1, 2):
        raise _unsupported("channels", channels, "1 (mono) or 2 (stereo)")
    n_q, card = int(lm["n_q"]), int(lm["card"])
    _check(lm_cfg, "codebooks_pattern.modeling", "delay", "MusicGen's delay pattern")
    delays = list(_get(lm_cfg, "codebooks_pattern.delay.delays"))
    wanted_delays = [c // channels for c in range(n_q)]
    if delays != wanted_delays:
        raise _unsupported("codebooks_pattern.delay.delays", delays, f"{wanted_delays} for {n_q} codebooks")
    _check(lm_cfg, "codebooks_pattern.delay.flatten_first", 0, "no flattened codebooks", default=0)
    _check(lm_cfg, "codebooks_pattern.delay.empty_initial", 0, "no empty initial steps", default=0)
    if channels == 2:
        _check(lm_cfg, "interleave_stereo_codebooks.use", True, "stereo needs interleaved codebooks")
        _check(
            lm_cfg, "interleave_stereo_codebooks.per_timestep", False, "codebooks interleaved, not steps", default=False
        )
    conditioners = _get(lm_cfg, "conditioners")
    if not isinstance(conditioners, dict) or set(conditioners) != {"description"}:
        raise _unsupported(
            "conditioners",
            sorted(conditioners or {}),
            "text-to-music models condition on 'description' only (no melody)",
        )
    _check(lm_cfg, "conditioners.description.model", "t5", "a T5 text encoder")
    _check(lm_cfg, "fuser.cross", ["description"], "the text enters through cross-attention")
    for field in ("sum", "prepend", "input_interpolate"):
        _check(lm_cfg, "fuser." + field, [], "the text enters through cross-attention only", default=[])
    _check(lm_cfg, "fuser.cross_attention_pos_emb", False, "no positions on the text", default=False)
    dim, heads = int(lm["dim"]), int(lm["num_heads"])
    if dim % heads:
        raise _unsupported("transformer_lm.num_heads", heads, f"must divide dim {dim}")
    return {
        "hidden_size": dim,
        "num_attention_heads": heads,
        "num_hidden_layers": int(lm["num_layers"]),
        "ffn_dim": int(dim * lm.get("hidden_scale", 4)),
        "num_codebooks": n_q,
        "vocab_size": card,
        "audio_channels": channels,
        "t5_name": str(_get(lm_cfg, "conditioners.description.t5.name")),
        "guidance": float(_get(lm_cfg, "classifier_free_guidance.inference_coef", 3.0)),
    }


def encodec_settings(comp_cfg: dict, codebooks: int, card: int) -> dict[str, Any]:
    """transformers ``EncodecConfig`` arguments for the compression model."""
    _check(comp_cfg, "compression_model", "encodec", "only EnCodec is supported")
    _check(comp_cfg, "encodec.autoencoder", "seanet", "EnCodec's SEANet")
    _check(comp_cfg, "encodec.quantizer", "rvq", "residual vector quantization")
    _check(comp_cfg, "encodec.renormalize", False, "no renormalisation (as MusicGen's EnCodec)", default=False)
    seanet = _get(comp_cfg, "seanet")
    rvq = _get(comp_cfg, "rvq")
    _check(comp_cfg, "seanet.channels", 1, "a mono codec (stereo models interleave two mono streams)")
    _check(comp_cfg, "seanet.activation", "ELU", "ELU activations")
    alpha = _get(comp_cfg, "seanet.activation_params.alpha", 1.0)
    if float(alpha) != 1.0:
        raise _unsupported("seanet.activation_params.alpha", alpha, "ELU with alpha 1")
    if seanet.get("norm") not in ("weight_norm", "time_group_norm"):
        raise _unsupported("seanet.norm", seanet.get("norm"), "weight_norm or time_group_norm")
    _check(comp_cfg, "seanet.disable_norm_outer_blocks", 0, "normalised outer blocks", default=0)
    _check(comp_cfg, "seanet.decoder.final_activation", None, "no final activation", default=None)
    if int(rvq["bins"]) != card:
        raise _unsupported("rvq.bins", rvq["bins"], f"the LM's card {card}")
    per_stream = codebooks  # stereo: the LM's codebooks alternate left and right
    if int(rvq["n_q"]) < per_stream:
        raise _unsupported("rvq.n_q", rvq["n_q"], f"at least the LM's {per_stream} codebooks per channel")
    dimension = int(seanet["dimension"])
    if int(rvq.get("dimension") or dimension) != dimension:
        raise _unsupported("rvq.dimension", rvq.get("dimension"), "the codec dimension (no projection)")
    sample_rate = int(_get(comp_cfg, "sample_rate"))
    hop = math.prod(int(r) for r in seanet["ratios"])
    frame_rate = math.ceil(sample_rate / hop)
    bits = math.log2(card)
    return {
        "sampling_rate": sample_rate,
        "audio_channels": 1,
        # transformers derives the quantizer count from the last bandwidth (and encodes at the first)
        "target_bandwidths": [per_stream * bits * frame_rate / 1000],
        "upsampling_ratios": [int(r) for r in seanet["ratios"]],
        "codebook_size": card,
        "codebook_dim": dimension,
        "hidden_size": dimension,
        "num_filters": int(seanet["n_filters"]),
        "num_residual_layers": int(seanet["n_residual_layers"]),
        "num_lstm_layers": int(seanet["lstm"]),
        "kernel_size": int(seanet["kernel_size"]),
        "last_kernel_size": int(seanet["last_kernel_size"]),
        "residual_kernel_size": int(seanet["residual_kernel_size"]),
        "dilation_growth_rate": int(seanet["dilation_base"]),
        "compress": int(seanet["compress"]),
        "use_causal_conv": bool(_get(comp_cfg, "encodec.causal", seanet.get("causal", False))),
        "pad_mode": str(seanet["pad_mode"]),
        "norm_type": str(seanet["norm"]),
        "use_conv_shortcut": not bool(seanet.get("true_skip", True)),
        "trim_right_ratio": float(_get(comp_cfg, "seanet.decoder.trim_right_ratio", 1.0)),
        "normalize": False,
    }


# ------------------------------------------------------------------------ weights
def decoder_state(lm_state: dict, settings: dict) -> tuple[dict, dict]:
    """(``MusicgenForCausalLM`` state dict, ``enc_to_dec_proj`` state dict) from audiocraft's keys."""
    out: dict = {}
    dim = settings["hidden_size"]
    for c in range(settings["num_codebooks"]):
        out[f"model.decoder.embed_tokens.{c}.weight"] = lm_state[f"emb.{c}.weight"]
        out[f"lm_heads.{c}.weight"] = lm_state[f"linears.{c}.weight"]
    renames = {
        "self_attn.out_proj": "self_attn.out_proj",
        "cross_attention.out_proj": "encoder_attn.out_proj",
        "linear1": "fc1",
        "linear2": "fc2",
        "norm1": "self_attn_layer_norm",
        "norm_cross": "encoder_attn_layer_norm",
        "norm2": "final_layer_norm",
    }
    for i in range(settings["num_hidden_layers"]):
        src, dst = f"transformer.layers.{i}.", f"model.decoder.layers.{i}."
        for attn, name in (("self_attn", "self_attn"), ("cross_attention", "encoder_attn")):
            q, k, v = lm_state[f"{src}{attn}.in_proj_weight"].split(dim, dim=0)  # rows are [q; k; v]
            out[f"{dst}{name}.q_proj.weight"] = q
            out[f"{dst}{name}.k_proj.weight"] = k
            out[f"{dst}{name}.v_proj.weight"] = v
        for a, b in renames.items():
            for suffix in ("weight", "bias"):
                if f"{src}{a}.{suffix}" in lm_state:
                    out[f"{dst}{b}.{suffix}"] = lm_state[f"{src}{a}.{suffix}"]
    out["model.decoder.layer_norm.weight"] = lm_state["out_norm.weight"]
    out["model.decoder.layer_norm.bias"] = lm_state["out_norm.bias"]
    proj_prefix = "condition_provider.conditioners.description.output_proj."
    proj = {name: lm_state[proj_prefix + name] for name in ("weight", "bias")}
    return out, proj


def encodec_state(comp_state: dict, target_keys: set[str], num_quantizers: int) -> dict:
    """transformers ``EncodecModel`` keys from audiocraft's (``target_keys`` picks the
    weight-norm naming this transformers version uses)."""
    parametrized = any(".parametrizations.weight." in k for k in target_keys)
    out: dict = {}
    for key, value in comp_state.items():
        new = key.replace("encoder.model.", "encoder.layers.").replace("decoder.model.", "decoder.layers.")
        new = new.replace(".conv.conv.", ".conv.").replace(".convtr.convtr.", ".conv.")
        new = new.replace(".conv.norm.", ".norm.").replace(".convtr.norm.", ".norm.")  # time_group_norm
        new = new.replace("quantizer.vq.layers.", "quantizer.layers.").replace("._codebook.", ".codebook.")
        if new.startswith("quantizer.layers.") and int(new.split(".")[2]) >= num_quantizers:
            continue  # levels the LM never uses
        if parametrized:
            new = new.replace(".weight_g", ".parametrizations.weight.original0")
            new = new.replace(".weight_v", ".parametrizations.weight.original1")
        out[new] = value
    return out


def _load_exact(module, state: dict, what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"the audiocraft {what} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelError(
                f"the audiocraft {what} does not match its config: {key} is "
                f"{tuple(value.shape)}, expected {tuple(expected[key].shape)}"
            )
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


# -------------------------------------------------------------------------- T5
def _load_t5(t5: str):
    from transformers import AutoTokenizer, T5EncoderModel

    from ..layout import looks_like_path

    if not os.path.isdir(t5) and looks_like_path(t5):
        raise ModelError(
            f"the T5 text encoder folder {t5} does not exist (audiocraft checkpoints do not hold "
            "the T5: pass --t5 with the folder or hub id of the one the model was trained with)"
        )
    kwargs: dict = {}
    if not os.path.isdir(t5):
        try:  # the Hugging Face cache first, as for models
            AutoTokenizer.from_pretrained(t5, local_files_only=True)
            kwargs["local_files_only"] = True
        except (OSError, ValueError):
            pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(t5, **kwargs)
        encoder = T5EncoderModel.from_pretrained(t5, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load the T5 text encoder '{t5}': {exc}. audiocraft checkpoints do not "
            "hold it: pass --t5 with a folder or hub id of the T5 the model was trained "
            "with"
        ) from exc
    return encoder.float(), tokenizer


T5_PREFIX = "condition_provider.conditioners.description.t5."


def _load_finetuned_t5(text_encoder, lm_state: dict) -> None:
    """A model trained with ``t5.finetune = true`` carries its own T5 weights: they replace
    the ones loaded from ``--t5`` (which still gives the tokenizer and the architecture)."""
    tuned = {k[len(T5_PREFIX) :]: v.float() for k, v in lm_state.items() if k.startswith(T5_PREFIX)}
    if not tuned:
        return
    result = text_encoder.load_state_dict(tuned, strict=False)
    missing = [k for k in result.missing_keys if k != "encoder.embed_tokens.weight"]  # tied to shared
    if missing or result.unexpected_keys:
        raise ModelError(
            f"the checkpoint's fine-tuned T5 does not fit the T5 given with --t5: missing "
            f"{missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


# --------------------------------------------------------------------- convert
def _usual_permissions(directory: Path) -> None:
    """mkdtemp makes a private folder (and safetensors a private file): give them the
    permissions a plain mkdir and write would have."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for path in directory.iterdir():
        os.chmod(path, 0o666 & ~umask)


def convert(src: Path, out: Path, t5: str | None = None, license_id: str = "unknown") -> Path:
    """Write the trackspec model folder ``out`` for the audiocraft checkpoint in ``src``."""
    from transformers import (
        EncodecConfig,
        EncodecFeatureExtractor,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        MusicgenProcessor,
    )

    from ..licences import declare_license, normalize
    from .musicgen import _quiet_transformers

    _quiet_transformers()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out} already exists and is not empty; choose a new folder")
    checkpoint = read_checkpoint(Path(src))
    settings = decoder_settings(checkpoint.lm_cfg)
    per_stream = settings["num_codebooks"] // settings["audio_channels"]
    codec = encodec_settings(checkpoint.compression_cfg, per_stream, settings["vocab_size"])
    if int(_get(checkpoint.lm_cfg, "sample_rate", codec["sampling_rate"])) != codec["sampling_rate"]:
        raise _unsupported(
            "sample_rate", _get(checkpoint.lm_cfg, "sample_rate"), f"the compression model's {codec['sampling_rate']}"
        )
    try:
        lm_weights, proj = decoder_state(checkpoint.lm_state, settings)
    except KeyError as exc:
        raise ModelError(
            f"the audiocraft LM checkpoint lacks {exc.args[0]} (not a MusicGen text-to-music model?)"
        ) from exc

    text_encoder, tokenizer = _load_t5(t5 or settings["t5_name"])
    t5_width = int(text_encoder.config.d_model)
    if tuple(proj["weight"].shape) != (settings["hidden_size"], t5_width):
        raise ModelError(
            f"the T5 '{t5 or settings['t5_name']}' is {t5_width} wide, but the checkpoint's "
            f"output_proj takes {proj['weight'].shape[1]}: pass the T5 the model was trained with"
        )
    if t5_width == settings["hidden_size"]:
        raise _unsupported(
            "transformer_lm.dim",
            settings["hidden_size"],
            "must differ from the T5 width: transformers' MusicGen only projects the text when the widths differ",
        )

    card = settings["vocab_size"]
    decoder_config = MusicgenDecoderConfig(
        vocab_size=card,
        max_position_embeddings=MAX_POSITIONS,
        num_hidden_layers=settings["num_hidden_layers"],
        ffn_dim=settings["ffn_dim"],
        num_attention_heads=settings["num_attention_heads"],
        hidden_size=settings["hidden_size"],
        num_codebooks=settings["num_codebooks"],
        audio_channels=settings["audio_channels"],
        activation_function="gelu",
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        layerdrop=0.0,
        scale_embedding=False,
        tie_word_embeddings=False,
        pad_token_id=card,
        bos_token_id=card,
    )
    encodec_config = EncodecConfig(**codec)
    config = MusicgenConfig(
        text_encoder=text_encoder.config.to_dict(),
        audio_encoder=encodec_config.to_dict(),
        decoder=decoder_config.to_dict(),
    )
    model = MusicgenForConditionalGeneration(config)
    if model.audio_encoder.quantizer.num_quantizers != per_stream:
        raise _unsupported("rvq.bins", card, f"transformers' EnCodec cannot hold {per_stream} codebooks of it")
    with torch.no_grad():
        model.text_encoder.load_state_dict(text_encoder.state_dict())
        _load_finetuned_t5(model.text_encoder, checkpoint.lm_state)
        _load_exact(model.decoder, lm_weights, "LM checkpoint")
        _load_exact(model.enc_to_dec_proj, proj, "text projection")
        target = set(model.audio_encoder.state_dict())
        _load_exact(
            model.audio_encoder,
            encodec_state(checkpoint.compression_state, target, per_stream),
            "compression checkpoint",
        )
    gen = model.generation_config
    gen.decoder_start_token_id = gen.pad_token_id = gen.bos_token_id = card
    gen.max_length = MAX_POSITIONS - 1
    gen.do_sample = True
    gen.guidance_scale = settings["guidance"]
    model.eval()

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(staging)
        feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=codec["sampling_rate"])
        MusicgenProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(staging)
        declare_license(staging, normalize(license_id))
        _usual_permissions(staging)
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
