"""The real CLI on a GPU, end to end, with a full-size random-weight MusicGen (small).

What the GPU benchmark (``gpu_generation.py``) does not cover: ``doctor``'s CUDA checks,
``build`` with ``device = "auto"`` picking CUDA, batches of tracks through the CLI,
``audition`` generating its takes in one CUDA batch, ``pin`` + ``build`` restoring the take,
and ``report``. Every step runs ``python -m importer`` in a subprocess, as a user would.

    python bench/gpu_cli_check.py --out DIR      # on a CUDA machine (bench/gpu_cli_check.sh)

Prints one line per step (rc, seconds) and writes ``DIR/gpu_cli.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
TRACK = "combat"  # auditioned at its full length: the pinned take is restored, not generated
EXTRA = {
    "combat": "driving synthwave combat, 140 BPM",
    "menu": "soft ambient menu pad",
    "credits": "warm nostalgic synth ballad",
}


def save_random(size: str, directory: Path) -> float:
    """A random-weight MusicGen of ``size`` (small: musicgen-small's architecture), saved as a model directory."""
    import torch
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    from bench.gpu_generation import random_model
    from importer.generate.tiny import TINY_SAMPLE_RATE
    from importer.licences import declare_license

    start = time.monotonic()
    model, tokenizer = random_model(size, torch.device("cpu"))
    model.save_pretrained(directory)
    MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=1, sampling_rate=TINY_SAMPLE_RATE), tokenizer=tokenizer
    ).save_pretrained(directory)
    declare_license(directory, "CC0-1.0")
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu-cli"))
    parser.add_argument("--size", default="small", help="small (default) or tiny (to try the script on a CPU)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="duration of the extra tracks and of the takes (default 30; the example keeps 60)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    model, repo = args.work / f"musicgen-{args.size}-random", args.work / "game"
    (repo / "track_specs").mkdir(parents=True)
    shutil.copy(PROJECT / "trackspec.toml", repo)
    shutil.copy(PROJECT / "track_specs/phase1_calm.trackspec", repo / "track_specs")
    for name, prompt in EXTRA.items():
        (repo / "track_specs" / f"{name}.trackspec").write_text(f'prompt = "{prompt}"\nduration = {args.seconds}\n')
    env = {
        **os.environ,
        "TRACKSPEC_CACHE_DIR": str(args.work / "cache"),
        "TRACKSPEC_MODEL": str(model),
        "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(PROJECT)]),
    }
    results: dict = {"model_build_s": round(save_random(args.size, model), 1), "steps": []}

    def step(label: str, *cli: str) -> dict:
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "importer", *cli], cwd=repo, env=env, capture_output=True, text=True, timeout=540
        )
        record = {
            "step": label,
            "argv": cli,
            "rc": proc.returncode,
            "seconds": round(time.monotonic() - start, 2),
            "stdout": proc.stdout,
            "stderr": proc.stderr[-3000:],
        }
        results["steps"].append(record)
        print(f"{label}: rc {proc.returncode}, {record['seconds']} s", flush=True)
        (args.out / "gpu_cli.json").write_text(json.dumps(results, indent=2))
        return record

    doctor = step("doctor", "doctor", "--json")
    build = step(f"build: 1 x 60 s + 3 x {args.seconds:g} s, cold", "build", "--json")
    step("build again (no-op)", "build")
    audition = step(f"audition: 8 takes x {args.seconds:g} s", "audition", TRACK, "--takes", "8", "--json")
    again = step("audition again (cache)", "audition", TRACK, "--takes", "8", "--json")
    step("pin take 3", "pin", TRACK, "3", "--json")
    rebuilt = step("build after pin", "build", "--json")
    report = step("report", "report")
    checks: dict = {}
    try:
        checks["doctor_ok"] = doctor["rc"] == 0
        checks["doctor_cuda"] = [c for c in json.loads(doctor["stdout"])["checks"] if "cuda" in json.dumps(c).lower()]
        checks["build_actions"] = {t["name"]: t["action"] for t in json.loads(build["stdout"])["tracks"]}
        checks["model_line"] = [line for line in build["stderr"].splitlines() if "model loaded" in line]
        takes = json.loads(audition["stdout"])["takes"]
        checks["takes_distinct"] = len({t["files"]["ogg"]["sha256"] for t in takes}) == len(takes)
        checks["audition_again_cached"] = all(t["action"] == "cached" for t in json.loads(again["stdout"])["takes"])
        index = json.loads((repo / "assets/music/index.json").read_text())
        published = hashlib.sha256((repo / index["tracks"][TRACK]["files"]["ogg"]["path"]).read_bytes()).hexdigest()
        checks["pinned_take_published"] = published == takes[2]["files"]["ogg"]["sha256"]
        checks["after_pin_action"] = {t["name"]: t["action"] for t in json.loads(rebuilt["stdout"])["tracks"]}
        page = Path(report["stdout"].strip())
        checks["report_images"] = len(list((page.parent / "img").glob("*.png"))) if page.is_file() else 0
    except Exception as exc:  # keep what ran
        checks["error"] = f"{type(exc).__name__}: {exc}"
    results["checks"] = checks
    (args.out / "gpu_cli.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(checks, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
