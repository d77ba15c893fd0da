"""``trackspec model``: model utilities (a tiny random MusicGen for tests and demos, and
importing audiocraft checkpoints)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, add_parser


def register(sub: argparse._SubParsersAction) -> None:
    model = add_parser(sub, "model", "model utilities", "Model utilities.")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    tiny = add_parser(
        model_sub,
        "tiny",
        "save a tiny random MusicGen (or MusicGen-Melody) for tests and offline demos",
        "Build a tiny MusicGen with RANDOM weights and save it to DIR. It makes noise, not "
        "music: it exists so tests and offline demos run the real loading and generation code "
        "without downloading a model or having a GPU.",
    )
    tiny.add_argument("directory", type=Path, metavar="DIR")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--stereo", action="store_true", help="a stereo model (8 interleaved codebooks)")
    tiny.add_argument(
        "--melody",
        action="store_true",
        help="a MusicGen-Melody (conditioned on a melody's chroma: generation.melody)",
    )
    tiny.set_defaults(run=run_tiny)
    audiocraft = add_parser(
        model_sub,
        "import-audiocraft",
        "convert an audiocraft MusicGen checkpoint into a model folder",
        "Convert a MusicGen checkpoint in audiocraft's export format (SRC holds state_dict.bin and "
        "compression_state_dict.bin, e.g. a model you fine-tuned with audiocraft) into the model folder "
        'OUT, which specs then name as model = "OUT". audiocraft checkpoints do not hold the T5 text '
        "encoder: --t5 names it (a folder or hub id; default: the name in the checkpoint's config). "
        "audiocraft is not needed, neither now nor when generating.",
    )
    audiocraft.add_argument("src", type=Path, metavar="SRC", help="the audiocraft checkpoint folder")
    audiocraft.add_argument("out", type=Path, metavar="OUT", help="the new model folder (must not exist yet)")
    audiocraft.add_argument(
        "--t5",
        metavar="DIR_OR_HUB_ID",
        help="the T5 text encoder the model was trained with (default: from its config)",
    )
    audiocraft.add_argument(
        "--license",
        default="unknown",
        metavar="ID",
        help="the weights' licence, as an SPDX id (default: unknown), written to OUT/trackspec-model.toml",
    )
    audiocraft.set_defaults(run=run_import_audiocraft)


def _generate_module(name: str):
    """``importer.generate.<name>``, or a clear error when the generate extra is missing."""
    import importlib

    try:
        return importlib.import_module(f"..generate.{name}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("torch", "transformers", "tokenizers", "safetensors", "yaml"):
            from ..errors import ModelError

            raise ModelError(
                f"making a model needs {exc.name}, which is not installed: pip install 'trackspec[generate]'"
            ) from exc
        raise


def run_import_audiocraft(args: argparse.Namespace) -> int:
    audiocraft = _generate_module("audiocraft")
    out = audiocraft.convert(args.src, args.out, t5=args.t5, license_id=args.license)
    print(f'converted {args.src} to {out}; use it with model = "{out}"')
    return EXIT_OK


def run_tiny(args: argparse.Namespace) -> int:
    directory = _generate_module("tiny").save_tiny_model(
        args.directory, seed=args.seed, audio_channels=2 if args.stereo else 1, melody=args.melody
    )
    kind = "MusicGen-Melody" if args.melody else "MusicGen"
    print(f"saved a tiny random {kind} (noise, not music) to {directory}")
    return EXIT_OK
