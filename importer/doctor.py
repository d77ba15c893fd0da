"""``trackspec doctor``'s checks: is this machine and repo ready to build?

Each check returns one ``Check`` (ok, warn or fail, a message and a hint saying what to
do). Checks only look: no model is downloaded, transformers is never imported, and the
cache and lock checks leave nothing behind. A failed check means a build would fail
(or could not generate); a warning means it would work, worse (slow CPU, little disk).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .console import human_bytes

Status = Literal["ok", "warn", "fail"]

#: Encoders the ``ogg`` and ``mp3`` formats need.
REQUIRED_ENCODERS = ("libvorbis", "libmp3lame")
#: Less free space than this in the cache's file system is a warning.
LOW_DISK_BYTES = 2 * 1024**3
GENERATE_HINT = "pip install 'trackspec[generate]' (restoring and encoding work without it)"


@dataclass
class Check:
    """One line of the report: ``name`` is stable (JSON consumers key on it)."""

    name: str
    status: Status
    message: str
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What the checks look at: the repo (if any), the cache folder, the models to check."""

    root: Path | None
    cache_dir: Path
    state_dir: Path | None
    device: str
    #: (model string, revision) -> (base folder for relative paths, specs using it)
    models: dict[tuple[str, str], tuple[Path, list[str]]]
    config_error: str | None = None
    spec_errors: list[str] = field(default_factory=list)
    spec_count: int = 0
    #: The team cache settings (``[cache.remote]``), if the repo has one.
    remote: Any = None


# --------------------------------------------------------------------------- context
def build_context(root: Path | None, explicit_root: bool, model_override: str | None) -> Context:
    """Find the repo (optional unless ``--root`` was given) and the models its specs name.

    Raises ``ProjectNotFound`` only for an explicit ``--root`` without trackspec.toml.
    """
    from .config import CACHE_ENV, default_cache_dir, find_root, load_config
    from .errors import ProjectNotFound, TrackspecError

    if root is None:
        try:
            root = find_root(Path.cwd())
        except ProjectNotFound:
            root = None
    env_cache = os.environ.get(CACHE_ENV)
    fallback_cache = (Path(env_cache).expanduser() if env_cache else default_cache_dir()).resolve()
    if root is None:
        return Context(None, fallback_cache, None, "auto", _override_models(model_override))
    try:
        config = load_config(root)
    except ProjectNotFound:
        if explicit_root:
            raise
        return Context(None, fallback_cache, None, "auto", _override_models(model_override))
    except TrackspecError as exc:  # an invalid trackspec.toml: report it, check the rest
        return Context(
            root.resolve(),
            fallback_cache,
            root.resolve() / ".trackspec",
            "auto",
            _override_models(model_override),
            config_error=str(exc),
        )
    ctx = Context(config.root, config.cache_dir, config.state_dir, config.device, {}, remote=config.remote)
    _collect_models(ctx, config, model_override)
    return ctx


def _override_models(model_override: str | None) -> dict[tuple[str, str], tuple[Path, list[str]]]:
    return {(model_override, "main"): (Path.cwd(), [])} if model_override else {}


def _collect_models(ctx: Context, config: Any, model_override: str | None) -> None:
    """Parse every spec for the model it names (``--model`` replaces them all, as in build)."""
    from .errors import TrackspecError
    from .spec import parse_spec
    from .tracks import spec_paths

    for path in spec_paths(config):
        ctx.spec_count += 1
        try:
            spec = parse_spec(path, config.spec_defaults, config.max_duration)
        except TrackspecError as exc:
            ctx.spec_errors.append(str(exc))
            continue
        model = model_override or spec.model
        base = Path.cwd() if model_override else config.root
        _, users = ctx.models.setdefault((model, spec.revision), (base, []))
        users.append(path.relative_to(config.root).as_posix())
    if not ctx.models:  # no valid spec: still check an explicit --model
        ctx.models.update(_override_models(model_override))


# --------------------------------------------------------------------------- checks
def check_project(ctx: Context) -> list[Check]:
    """trackspec.toml and its specs (skipped with a note where there is no repo)."""
    if ctx.config_error:
        return [Check("project", "fail", ctx.config_error, "fix trackspec.toml; `trackspec build` stops here too")]
    if ctx.root is None:
        return [
            Check(
                "project",
                "warn",
                "no trackspec.toml here or above: repo checks (specs, locks) skipped",
                "run doctor in your game repo, pass --root, or run `trackspec init`",
            )
        ]
    checks = [
        Check(
            "project",
            "ok",
            f"{ctx.root / 'trackspec.toml'} ({ctx.spec_count} specs)",
            details={"root": str(ctx.root), "specs": ctx.spec_count},
        )
    ]
    if ctx.spec_errors:
        checks.append(
            Check(
                "specs",
                "warn",
                f"{len(ctx.spec_errors)} of {ctx.spec_count} specs are invalid; first: {ctx.spec_errors[0]}",
                "fix them; `trackspec build --check` lists every error",
                {"errors": ctx.spec_errors},
            )
        )
    return checks


def check_ffmpeg(ctx: Context) -> list[Check]:
    """The ffmpeg build finds and has the Vorbis and LAME encoders."""
    import subprocess

    try:
        from .encode import ffmpeg_exe

        exe = ffmpeg_exe()
    except Exception as exc:  # EncodeError (bad TRACKSPEC_FFMPEG), a broken imageio-ffmpeg, ...
        return [
            Check(
                "ffmpeg",
                "fail",
                f"not found: {exc}",
                "reinstall trackspec (imageio-ffmpeg ships an ffmpeg) or set TRACKSPEC_FFMPEG to one",
            )
        ]
    try:
        proc = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [
            Check(
                "ffmpeg",
                "fail",
                f"{exe} does not run: {exc}",
                "point TRACKSPEC_FFMPEG at a working ffmpeg, or reinstall imageio-ffmpeg",
            )
        ]
    names = {line.split()[1] for line in proc.stdout.splitlines() if len(line.split()) > 1}
    missing = [e for e in REQUIRED_ENCODERS if e not in names]
    details = {"path": exe, "encoders": {e: e in names for e in REQUIRED_ENCODERS}}
    if proc.returncode != 0 or missing:
        return [
            Check(
                "ffmpeg",
                "fail",
                f"{exe} lacks encoder(s) {', '.join(missing) or '?'} (exit {proc.returncode})",
                "use an ffmpeg built with libvorbis and libmp3lame (set TRACKSPEC_FFMPEG), "
                "or unset TRACKSPEC_FFMPEG to use the bundled one",
                details,
            )
        ]
    return [Check("ffmpeg", "ok", f"{exe} ({', '.join(REQUIRED_ENCODERS)})", details=details)]


def check_torch(ctx: Context) -> list[Check]:
    """torch and transformers for generation, and whether CUDA is there."""
    from importlib import metadata

    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install raising something else
        return [
            Check("torch", "fail", f"not importable ({exc}): tracks cannot be generated", GENERATE_HINT),
            Check("cuda", "warn", "unknown (torch is missing)", GENERATE_HINT),
        ]
    checks = [Check("torch", "ok", f"torch {torch.__version__}", details={"version": torch.__version__})]
    try:
        version = metadata.version("transformers")  # its metadata only: importing it takes seconds
        checks.append(Check("transformers", "ok", f"transformers {version}", details={"version": version}))
    except metadata.PackageNotFoundError:
        checks.append(Check("transformers", "fail", "not installed: tracks cannot be generated", GENERATE_HINT))
    checks.append(_cuda(torch, ctx.device))
    return checks


def _cuda(torch: Any, device: str) -> Check:
    if not torch.cuda.is_available():
        status: Status = "fail" if device == "cuda" else "warn"
        why = 'trackspec.toml says device = "cuda"' if device == "cuda" else "generation runs on the CPU (slow)"
        return Check(
            "cuda",
            status,
            f"no CUDA device: {why}",
            "install a CUDA build of torch (see README) on a machine with an NVIDIA GPU, "
            "or generate elsewhere and share the cache",
            {"available": False},
        )
    props = torch.cuda.get_device_properties(0)
    name, total = torch.cuda.get_device_name(0), int(props.total_memory)
    return Check(
        "cuda",
        "ok",
        f"{name}, {human_bytes(total)} (CUDA {torch.version.cuda})",
        details={"available": True, "device": name, "total_memory": total, "count": torch.cuda.device_count()},
    )


def check_model(ctx: Context) -> list[Check]:
    """Each model the specs name is loadable offline: a local folder or in the HF cache."""
    if not ctx.models:
        return [
            Check("model", "warn", "no model to check (no specs and no --model)", "pass --model ID_OR_DIR to check one")
        ]
    return [
        _check_model(model, revision, base, users) for (model, revision), (base, users) in sorted(ctx.models.items())
    ]


def _check_model(model: str, revision: str, base: Path, users: list[str]) -> Check:
    from .layout import looks_like_path

    used_by = f" (used by {', '.join(users[:3])}{' ...' if len(users) > 3 else ''})" if users else ""
    details: dict[str, Any] = {"model": model, "revision": revision, "specs": users}
    candidate = Path(model).expanduser()
    candidate = candidate if candidate.is_absolute() else base / candidate
    if candidate.is_dir() or looks_like_path(model):
        details.update(kind="local", path=str(candidate))
        return _local_model(model, candidate, used_by, details)
    details["kind"] = "hub"
    return _hub_model(model, revision, used_by, details)


def _local_model(model: str, directory: Path, used_by: str, details: dict[str, Any]) -> Check:
    config = directory / "config.json"
    if not config.is_file():
        what = "has no config.json" if directory.is_dir() else "does not exist"
        return Check(
            "model",
            "fail",
            f"model {model}{used_by}: {directory} {what}",
            "save a model there with save_pretrained (or `trackspec model tiny DIR` for a test "
            "model), or fix generation.model / --model",
            details,
        )
    return _model_type_check(model, config, used_by, details, f"local folder {directory}")


def _hub_model(model: str, revision: str, used_by: str, details: dict[str, Any]) -> Check:
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return Check(
            "model",
            "fail",
            f"model {model}{used_by}: cannot look in the Hugging Face cache (huggingface_hub is not installed)",
            GENERATE_HINT,
            details,
        )
    details["hf_cache"] = str(constants.HF_HUB_CACHE)
    found = try_to_load_from_cache(model, "config.json", revision=revision)
    if not isinstance(found, str):  # None or the "known missing" marker: never downloads
        return Check(
            "model",
            "fail",
            f"model {model}@{revision}{used_by} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); a build would have to download it",
            f"download it once with network access (`hf download {model}`), or point "
            "generation.model / --model at a local folder",
            details,
        )
    return _model_type_check(model, Path(found), used_by, details, f"in the Hugging Face cache @{revision}")


def _model_type_check(model: str, config: Path, used_by: str, details: dict[str, Any], where: str) -> Check:
    """A model folder whose config.json is not MusicGen's fails at load: say so now."""
    try:
        from .fsutil import read_regular

        model_type = json.loads(read_regular(config, 16 << 20).decode("utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        return Check(
            "model", "fail", f"model {model}{used_by}: {config} is unreadable ({exc})", "save the model again", details
        )
    details["model_type"] = model_type
    if model_type != "musicgen":
        return Check(
            "model",
            "fail",
            f"model {model}{used_by} is a {model_type!r} model, not MusicGen",
            "point generation.model / --model at a MusicGen model",
            details,
        )
    return Check("model", "ok", f"{model}{used_by}: {where}", details=details)


def check_cache(ctx: Context) -> list[Check]:
    """The cache folder is writable (a temp file is written and deleted) and has room."""
    import shutil
    import tempfile

    target = ctx.cache_dir
    while not target.exists() and target != target.parent:
        target = target.parent  # a missing cache is made by the first build: test where it would go
    details: dict[str, Any] = {"path": str(ctx.cache_dir), "exists": ctx.cache_dir.is_dir()}
    hint = "set TRACKSPEC_CACHE_DIR (or `cache` in trackspec.toml) to a writable folder"
    try:
        if not target.is_dir():
            raise NotADirectoryError(f"{target} is not a folder")
        fd, probe = tempfile.mkstemp(prefix=".trackspec-doctor-", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return [Check("cache", "fail", f"cache {ctx.cache_dir} is not writable ({exc})", hint, details)]
    checks = [
        Check(
            "cache",
            "ok",
            f"{ctx.cache_dir} writable" + ("" if details["exists"] else " (created by the first build)"),
            details=details,
        )
    ]
    free = shutil.disk_usage(target).free
    disk = {"path": str(target), "free": free}
    if free < LOW_DISK_BYTES:
        checks.append(
            Check(
                "disk",
                "warn",
                f"only {human_bytes(free)} free for the cache ({target})",
                "free space, or `trackspec cache gc --max-size 1G`",
                disk,
            )
        )
    else:
        checks.append(Check("disk", "ok", f"{human_bytes(free)} free for the cache", details=disk))
    return checks


def check_locks(ctx: Context) -> list[Check]:
    """Whether a build or a watch daemon holds this repo's locks (acquired and released at once)."""
    from .locks import daemon_lock_path, lock_held, repo_lock_path

    if ctx.state_dir is None:
        return []
    checks = []
    held = lock_held(repo_lock_path(ctx.state_dir))
    if held:
        checks.append(
            Check(
                "repo_lock",
                "warn",
                f"held by another trackspec process ({repo_lock_path(ctx.state_dir)})",
                "a build or watch is working on this repo; a build now waits for it (or exits 3 with --no-wait)",
                {"held": True},
            )
        )
    else:
        checks.append(Check("repo_lock", "ok", "free", details={"held": False}))
    daemon = lock_held(daemon_lock_path(ctx.state_dir))
    checks.append(
        Check(
            "watch",
            "ok",
            "a `trackspec watch` daemon is running on this repo" if daemon else "no watch daemon running",
            details={"running": daemon},
        )
    )
    return checks


def check_remote(ctx: Context) -> list[Check]:
    """The team cache: reachable with these credentials, and writable when ``push = true``
    (a probe object is created and deleted). Skipped without ``[cache.remote]``."""
    if ctx.remote is None:
        return []
    from .remote.session import open_tier
    from .remote.store import StoreError

    settings = ctx.remote
    details: dict[str, Any] = {"url": settings.url, "endpoint_url": settings.endpoint_url, "push": settings.push}
    creds = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), endpoint_url and url"
    try:
        tier = open_tier(settings)
        entries = tier.check_read()
    except StoreError as exc:
        hint = "pip install 'trackspec[remote]'" if "not installed" in str(exc) else creds
        return [
            Check(
                "remote",
                "fail",
                f"team cache {settings.url}: {exc}; builds warn and generate locally",
                hint,
                {**details, "cause": exc.cause},
            )
        ]
    checks = [
        Check(
            "remote",
            "ok",
            f"team cache {settings.url} reachable, {entries} entries"
            + (f" ({settings.endpoint_url})" if settings.endpoint_url else ""),
            details={**details, "entries": entries},
        )
    ]
    if settings.push:
        try:
            tier.check_write()
        except StoreError as exc:
            what = "permission error: these credentials may not write" if exc.cause == "denied" else "cannot write"
            checks.append(
                Check(
                    "remote_write",
                    "fail",
                    f"{what} to {settings.url} but push = true ({exc}); builds warn and push nothing",
                    "use credentials with write access where builds should push (CI, build farm), "
                    "or set push = false in [cache.remote]",
                    {**details, "cause": exc.cause},
                )
            )
        else:
            checks.append(Check("remote_write", "ok", f"push = true: {settings.url} is writable", details=details))
    return checks


CHECKS: list[Callable[[Context], list[Check]]] = [
    check_project,
    check_ffmpeg,
    check_torch,
    check_model,
    check_cache,
    check_locks,
    check_remote,
]


def run_checks(ctx: Context) -> list[Check]:
    """Every check, in report order; a check that crashes is reported as a failure, not raised."""
    results: list[Check] = []
    for check in CHECKS:
        try:
            results.extend(check(ctx))
        except Exception as exc:
            name = check.__name__.removeprefix("check_")
            results.append(
                Check(
                    name,
                    "fail",
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    "this is a bug in trackspec doctor; please report it",
                )
            )
    return results


def report_json(ctx: Context, checks: list[Check]) -> dict[str, Any]:
    """The ``--json`` document (importer/schemas/doctor.schema.json)."""
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}
    return {
        "schema_version": 1,
        "ok": counts["fail"] == 0,
        "root": str(ctx.root) if ctx.root else None,
        "cache_dir": str(ctx.cache_dir),
        "counts": counts,
        "checks": [asdict(c) for c in checks],
    }


def report_line(check: Check) -> str:
    """``FAIL  model: ... -> what to do`` (one line per check)."""
    line = f"{check.status.upper():<4}  {check.name}: {check.message}"
    return f"{line}  -> {check.hint}" if check.hint and check.status != "ok" else line
