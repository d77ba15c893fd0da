"""Build and save a tiny, randomly initialised MusicGen.

It makes noise, not music. It exists so that tests and offline demos exercise the real
loading and generation code (``from_pretrained`` on a directory, the T5 text encoder, the
decoder, EnCodec) on a machine with no network and no GPU. The layout on disk is the one
``facebook/musicgen-*`` uses, so the product loads it exactly like a hub model.
"""

from __future__ import annotations

import string
from pathlib import Path

TINY_SAMPLE_RATE = 32_000
#: Character-level tokens: a long prompt needs more of them than T5's 512 word pieces.
TINY_MAX_TEXT_TOKENS = 4096
#: A melody model's chroma frames: 30 s at the extractor's 32 kHz and 4096-sample hop, as
#: musicgen-melody's ``chroma_length``.
TINY_CHROMA_LENGTH = 235
#: The ``preprocessor_config.json`` of musicgen-melody (transformers' extractor defaults).
MELODY_FEATURE_EXTRACTOR = {
    "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
    "processor_class": "MusicgenMelodyProcessor",
    "feature_size": 12,
    "sampling_rate": TINY_SAMPLE_RATE,
    "hop_length": 4096,
    "chunk_length": 30,
    "n_fft": 16384,
    "num_chroma": 12,
    "padding_side": "right",
    "padding_value": 0.0,
    "return_attention_mask": False,
    "stem_indices": [3, 2],
}


def build_tokenizer():
    """A small Unigram tokenizer (letters, digits, punctuation) built with ``tokenizers``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = string.ascii_lowercase + string.digits
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + c, -3.0) for c in alphabet]
    pieces += [(c, -4.0) for c in alphabet + string.punctuation]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=TINY_MAX_TEXT_TOKENS,
    )


def tiny_configs(tokenizer, audio_channels: int = 1, decoder_config_class=None) -> dict:
    """The sub-configs of a tiny MusicGen (``text_encoder``, ``audio_encoder``, ``decoder``) as
    dicts; ``decoder_config_class`` picks the decoder's config (MusicGen's by default)."""
    from transformers import EncodecConfig, MusicgenDecoderConfig, T5Config

    text_config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    audio_config = EncodecConfig(
        sampling_rate=TINY_SAMPLE_RATE,
        audio_channels=1,
        target_bandwidths=[2.2],
        upsampling_ratios=[8, 5, 4, 4],
        codebook_size=2048,
        hidden_size=16,
        num_filters=4,
        num_residual_layers=1,
        num_lstm_layers=1,
        use_causal_conv=False,
        use_conv_shortcut=False,
        normalize=False,
    )
    decoder_config = (decoder_config_class or MusicgenDecoderConfig)(
        vocab_size=2048,
        max_position_embeddings=2048,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=4,
        hidden_size=32,
        num_codebooks=4 * audio_channels,
        audio_channels=audio_channels,
        pad_token_id=2048,
        bos_token_id=2048,
        dropout=0.0,
    )
    return {
        "text_encoder": text_config.to_dict(),
        "audio_encoder": audio_config.to_dict(),
        "decoder": decoder_config.to_dict(),
    }


def build_tiny_model(seed: int = 0, audio_channels: int = 1, melody: bool = False):
    """Return ``(model, tokenizer)``: a MusicGen with the real architecture at toy sizes.

    The EnCodec part keeps the real 32 kHz rate and 640-sample hop (50 frames per second)
    and four 2048-entry codebooks, so durations, frame counts and the delay pattern are the
    same as musicgen-small/medium. Its codebooks start at zero in transformers, which
    would decode every code to the same vector, so they are filled with random values.
    ``melody``: a MusicGen-Melody (chroma and text prepended to the decoder's input, the
    real 235 chroma frames of 30 s) instead.
    """
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    if melody:
        from transformers import (
            MusicgenMelodyConfig,
            MusicgenMelodyDecoderConfig,
            MusicgenMelodyForConditionalGeneration,
        )

        configs = tiny_configs(tokenizer, audio_channels, MusicgenMelodyDecoderConfig)
        config = MusicgenMelodyConfig(
            **configs, num_chroma=MELODY_FEATURE_EXTRACTOR["num_chroma"], chroma_length=TINY_CHROMA_LENGTH
        )
        model = MusicgenMelodyForConditionalGeneration(config)
        with torch.no_grad():  # at the default 0.02 scale the random melody would barely be heard
            model.audio_enc_to_dec_proj.weight.normal_(0.0, 1.0)
    else:
        from transformers import MusicgenConfig, MusicgenForConditionalGeneration

        model = MusicgenForConditionalGeneration(MusicgenConfig(**tiny_configs(tokenizer, audio_channels)))
    finish_random_model(model)
    return model, tokenizer


def finish_random_model(model) -> None:
    """Make a randomly initialised MusicGen usable: random EnCodec codebooks (transformers
    starts them at zero, which decodes every code to the same vector) and the generation
    settings a hub model ships with."""
    import torch

    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            layer.codebook.embed.normal_(0.0, 1.0)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            layer.codebook.cluster_size.fill_(1.0)
            layer.codebook.inited.fill_(True)
    gen = model.generation_config
    special = model.decoder.config.vocab_size  # the id after the last code: start and padding
    gen.decoder_start_token_id = special
    gen.pad_token_id = special
    gen.bos_token_id = special
    gen.max_length = 1500
    gen.do_sample = True
    gen.guidance_scale = 3.0
    model.eval()


def save_tiny_model(directory: Path, seed: int = 0, audio_channels: int = 1, melody: bool = False) -> Path:
    """Build the tiny model and save it with ``save_pretrained`` (safetensors + tokenizer).

    A melody model's feature extractor (``MusicgenMelodyFeatureExtractor``) needs torchaudio
    to be instantiated, so its ``preprocessor_config.json`` is written as the hub's is.
    """
    import json

    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    from ..licences import declare_license
    from .musicgen import _quiet_transformers

    _quiet_transformers()
    model, tokenizer = build_tiny_model(seed=seed, audio_channels=audio_channels, melody=melody)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    if melody:
        tokenizer.save_pretrained(directory)
        (directory / "preprocessor_config.json").write_text(
            json.dumps(MELODY_FEATURE_EXTRACTOR, indent=2) + "\n", encoding="utf-8"
        )
    else:
        feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=TINY_SAMPLE_RATE)
        MusicgenProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(directory)
    declare_license(directory, "CC0-1.0")  # random weights made here: nobody's rights
    return directory
