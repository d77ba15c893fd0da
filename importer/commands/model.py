"""``trackspec model``: model utilities (a tiny random MusicGen for tests and demos)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_OK, add_parser


def register(sub: argparse._SubParsersAction) -> None:
    model = add_parser(sub, "model", "model utilities", "Model utilities.")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    tiny = add_parser(model_sub, "tiny", "save a tiny random MusicGen for tests and offline demos",
                      "Build a tiny MusicGen with RANDOM weights and save it to DIR. It makes noise, not "
                      "music: it exists so tests and offline demos run the real loading and generation code "
                      "without downloading a model or having a GPU.")
    tiny.add_argument("directory", type=Path, metavar="DIR")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--stereo", action="store_true", help="a stereo model (8 interleaved codebooks)")
    tiny.set_defaults(run=run_tiny)


def run_tiny(args: argparse.Namespace) -> int:
    try:
        from ..generate.tiny import save_tiny_model
    except ModuleNotFoundError as exc:
        from ..errors import ModelError

        raise ModelError(f"making a model needs {exc.name}, which is not installed: "
                         "pip install 'trackspec[generate]'") from exc

    directory = save_tiny_model(args.directory, seed=args.seed, audio_channels=2 if args.stereo else 1)
    print(f"saved a tiny random MusicGen (noise, not music) to {directory}")
    return EXIT_OK
