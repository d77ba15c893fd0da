"""``trackspec.toml``: finds the game repo root and holds its project settings.

The file marks the root (found by walking up from the working directory, or given with
``--root``). Paths in it are relative to the root; outputs must stay inside the repo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, Location, ProjectNotFound
from .fields import FREE_TABLES, TABLES, TOP_FIELDS, Field, FieldProblem, boolean, ranged, text
from .layout import CACHE_ENV, CONFIG_NAME, STATE_DIR_NAME, find_root_dir
from .spec import builtin_defaults, check_table, merge
from .tomlsource import TomlDocument, read_toml

WORKERS_ENV = "TRACKSPEC_ENCODE_WORKERS"
#: Overrides ``[cache.remote] push`` (``true``/``false``): set on CI or the build farm.
REMOTE_PUSH_ENV = "TRACKSPEC_REMOTE_PUSH"
#: "auto" renders on this many threads at most: each drives one ffmpeg process (about
#: one core), and beyond a few the disk and the GPU's output rate are the limit anyway.
MAX_AUTO_WORKERS = 8


def _paths(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise FieldProblem("must be a folder or an array of folders (relative to the repo root)")
    return value


def _device(value: Any) -> str:
    if value not in ("auto", "cuda", "mps", "cpu"):
        raise FieldProblem(f"{value!r} is not a device; allowed: 'auto', 'cuda', 'mps', 'cpu'")
    return value


def _workers(value: Any) -> str | int:
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise FieldProblem(f"{value!r} is not a worker count; allowed: 'auto' or an integer 1..64")
    return value


def auto_workers() -> int:
    """Cores this process may use (its CPU affinity where the OS has one), at most ``MAX_AUTO_WORKERS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


PROJECT_FIELDS: dict[str, Field] = {
    "specs": Field(
        _paths,
        ["."],
        "folders searched (recursively) for *.trackspec files; default: the whole "
        "repo, less what .gitignore ignores, the assets folder and hidden folders",
    ),
    "assets": Field(text(required=True), "assets/music", "where <genre>/<name>.<ext> files are written"),
    "index": Field(text(required=True), "assets/music/index.json", "the asset index the engine reads"),
    "cache": Field(text(required=True), None, "cache folder; default: the user cache dir"),
    "device": Field(_device, "auto", "auto (CUDA when present, else Apple mps when present), cuda, mps or cpu"),
    "max_duration": Field(ranged(0.0, 3600.0, lo_open=True), 300.0, "longest duration a spec may ask for"),
    "batch_size": Field(ranged(1, 256, integer=True), 8, "most tracks generated together in one batch"),
    "encode_workers": Field(
        _workers,
        "auto",
        "tracks encoded at once (one ffmpeg each); auto: the cores, "
        f"at most {MAX_AUTO_WORKERS}; {WORKERS_ENV} overrides",
    ),
    "commercial": Field(boolean, False, "a commercial game: refuse models whose licence forbids commercial use"),
    "allow_noncommercial_models": Field(boolean, False, "with commercial = true, build with such models anyway"),
}


#: ``[engine]``: where the game engine's project is, when trackspec cannot find it by itself.
ENGINE_FIELDS: dict[str, Field] = {
    "godot": Field(
        text(required=True),
        None,
        "the Godot project folder (with project.godot); default: the "
        "nearest folder at or above the assets folder that has one",
    ),
}


#: ``[cache]`` as a table: ``dir`` (what ``cache = "..."`` sets) and the ``[cache.remote]`` tier.
CACHE_TABLE_FIELDS: dict[str, Field] = {
    "dir": Field(text(required=True), None, "cache folder; default: the user cache dir"),
}


@dataclass(frozen=True)
class ProjectConfig:
    """The validated project: absolute paths, defaults merged for specs."""

    root: Path
    config_path: Path
    spec_dirs: list[Path]
    assets_dir: Path
    index_path: Path
    cache_dir: Path
    state_dir: Path
    device: str
    max_duration: float
    batch_size: int
    #: Tracks rendered (resampled, encoded, verified) at once, each on its own thread.
    encode_workers: int
    #: Licence gate: refuse non-commercial weights unless ``allow_noncommercial_models``.
    commercial: bool = False
    allow_noncommercial_models: bool = False
    spec_defaults: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    #: (path as configured, joined to the root; that path resolved) for every folder and
    #: file setting: a symlink retargeted later changes what the settings mean.
    resolved_from: tuple[tuple[str, str], ...] = ()
    #: The team cache tier under the local cache (``[cache.remote]``); ``None``: local only.
    remote: Any = None
    #: ``[engine] godot``: the Godot project folder as configured; ``None``: found from the assets folder.
    godot_project: Path | None = None
    #: Where generation runs (``[farm]``, ``TRACKSPEC_FARM``; ``farm_settings.FarmSettings``);
    #: ``None``: on this process's device.
    farm: Any = None

    @property
    def staging_dir(self) -> Path:
        """Where files bound for the assets folder are written before their rename."""
        return self.state_dir / "tmp"


def rel(config: ProjectConfig, path: Path) -> str:
    """A path relative to the repo root, with forward slashes (as the index stores it).

    Paths the build makes are already absolute under the (resolved) root: those are
    taken as they are, since resolving every one costs an lstat per path component.
    """
    if path.is_absolute() and ".." not in path.parts:
        try:
            return path.relative_to(config.root).as_posix()
        except ValueError:
            return path.as_posix()
    try:
        return path.resolve().relative_to(config.root).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding ``trackspec.toml``."""
    found = find_root_dir(str(start))
    if found is not None:
        return Path(found)
    start = start.resolve()
    raise ProjectNotFound(
        f"no {CONFIG_NAME} in {start} or any folder above it; run `trackspec init` in your game repo, or pass --root"
    )


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("trackspec", appauthor=False))


def _inside(root: Path, path: Path, doc: TomlDocument, key: str, resolved_from: list[tuple[str, str]]) -> Path:
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(doc.locate(key), f"{path} is outside the game repo ({root})", key)
    resolved_from.append((str(path), str(resolved)))
    return resolved


def load_config(root: Path) -> ProjectConfig:
    """Read ``root/trackspec.toml``; environment overrides apply (``TRACKSPEC_CACHE_DIR``,
    ``TRACKSPEC_ENCODE_WORKERS``)."""
    from .fsutil import sha256_bytes

    root = root.resolve()
    path = root / CONFIG_NAME
    if not path.is_file():
        raise ProjectNotFound(f"{root} has no {CONFIG_NAME}; run `trackspec init` there first")
    doc = read_toml(path, ConfigError)
    data, remote = _cache_table(doc)
    data, farm = _farm_table(doc, data)
    values = check_table(
        doc, data, PROJECT_FIELDS, (), ConfigError, {"engine": ENGINE_FIELDS}, free_tables=("defaults",)
    )
    default_fields = {k: f for k, f in TOP_FIELDS.items() if k != "name"}
    spec_defaults_own = check_table(
        doc, values.get("defaults", {}), default_fields, ("defaults",), ConfigError, TABLES, FREE_TABLES
    )
    settings = {k: f.default for k, f in PROJECT_FIELDS.items()}
    settings.update({k: v for k, v in values.items() if k not in ("defaults", "engine")})
    if isinstance(doc.data.get("cache"), dict):
        settings["cache"] = doc.data["cache"].get("dir")

    resolved_from: list[tuple[str, str]] = []
    assets = _inside(root, root / settings["assets"], doc, "assets", resolved_from)
    index = _inside(root, root / settings["index"], doc, "index", resolved_from)
    if index.suffix != ".json":
        raise ConfigError(doc.locate("index"), "the index must be a .json file", "index")
    env_cache = os.environ.get(CACHE_ENV)
    if env_cache:
        cache = Path(env_cache).expanduser()
    elif settings["cache"]:
        cache = root / Path(settings["cache"]).expanduser()
    else:
        cache = default_cache_dir()
    spec_dirs = [_inside(root, root / d, doc, "specs", resolved_from) for d in settings["specs"]]
    resolved_from.append((str(cache), str(cache.resolve())))
    engine = values.get("engine", {})
    godot = _inside(root, root / engine["godot"], doc, "engine", resolved_from) if "godot" in engine else None
    if "prompt" in spec_defaults_own:
        raise ConfigError(
            doc.locate("defaults", "prompt"), "a prompt belongs in each spec, not in [defaults]", "defaults.prompt"
        )
    return ProjectConfig(
        root=root,
        config_path=path,
        spec_dirs=spec_dirs,
        assets_dir=assets,
        index_path=index,
        cache_dir=cache.resolve(),
        state_dir=root / STATE_DIR_NAME,
        device=settings["device"],
        max_duration=float(settings["max_duration"]),
        batch_size=int(settings["batch_size"]),
        encode_workers=_encode_workers(settings["encode_workers"]),
        commercial=bool(settings["commercial"]),
        allow_noncommercial_models=bool(settings["allow_noncommercial_models"]),
        spec_defaults=merge(builtin_defaults(), spec_defaults_own),
        digest=sha256_bytes(doc.text.encode()),
        resolved_from=tuple(resolved_from),
        remote=remote,
        godot_project=godot,
        farm=farm,
    )


def _farm_table(doc: TomlDocument, data: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Split off ``[farm]`` (validated with file and field in every error); ``TRACKSPEC_FARM``
    sets or overrides its address. Returns (the other settings, ``FarmSettings`` or ``None``)."""
    from .farm_settings import FARM_ENV, FARM_FIELDS, FarmSettings, check_address

    values: dict[str, Any] = {}
    if "farm" in data:
        values = check_table(doc, {"farm": data["farm"]}, {}, (), ConfigError, {"farm": FARM_FIELDS})["farm"]
        data = {k: v for k, v in data.items() if k != "farm"}
    env = os.environ.get(FARM_ENV)
    if env:
        try:
            values = {**values, "address": check_address(env)}
        except FieldProblem as exc:
            raise ConfigError(Location(Path(f"environment variable {FARM_ENV}")), str(exc)) from None
    if not values:
        return data, None
    if "address" not in values:
        raise ConfigError(
            doc.locate("farm"), "missing required field address ('local', 'auto' or 'ray://host:10001')", "farm.address"
        )
    return data, FarmSettings.from_values(values)


def _cache_table(doc: TomlDocument) -> tuple[dict[str, Any], Any]:
    """Split off a ``[cache]`` table (``dir`` and ``[cache.remote]``), validated with file and
    field in every error; ``cache = "folder"`` stays a plain setting. Returns (the other
    settings, the remote tier's ``RemoteSettings`` or ``None``)."""
    from .remote.settings import REMOTE_FIELDS, SECRET_HINT, SECRET_KEYS, RemoteSettings

    table = doc.data.get("cache")
    if not isinstance(table, dict):
        return doc.data, None
    data = {k: v for k, v in doc.data.items() if k != "cache"}
    remote = table.get("remote")
    if isinstance(remote, dict):
        for key in remote:
            if key.lower() in SECRET_KEYS:
                raise ConfigError(doc.locate("cache", "remote", key), SECRET_HINT, f"cache.remote.{key}")
    values = check_table(doc, table, CACHE_TABLE_FIELDS, ("cache",), ConfigError, {"remote": REMOTE_FIELDS})
    if "remote" not in values:
        return data, None
    if "url" not in values["remote"]:
        raise ConfigError(
            doc.locate("cache", "remote"), "missing required field url (s3://bucket/prefix)", "cache.remote.url"
        )
    remote_values = values["remote"]
    push_env = os.environ.get(REMOTE_PUSH_ENV)
    if push_env:  # CI pushes, developers' machines (the committed file) do not
        flag = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(push_env.lower())
        if flag is None:
            raise ConfigError(
                Location(Path(f"environment variable {REMOTE_PUSH_ENV}")),
                f"{push_env!r} is not allowed; use true or false (or 1, 0)",
            )
        remote_values = {**remote_values, "push": flag}
    return data, RemoteSettings.from_values(remote_values)


def _encode_workers(configured: str | int) -> int:
    """The worker count: ``TRACKSPEC_ENCODE_WORKERS`` if set, else the project's, "auto" resolved."""
    env = os.environ.get(WORKERS_ENV)
    if env:
        try:
            configured = _workers(int(env) if env.strip().lstrip("-").isdigit() else env.strip())
        except FieldProblem as exc:
            raise ConfigError(Location(Path(f"environment variable {WORKERS_ENV}")), str(exc)) from None
    return auto_workers() if configured == "auto" else int(configured)
