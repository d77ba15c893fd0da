"""``trackspec.toml``: finds the game repo root and holds its project settings.

The file marks the root (found by walking up from the working directory, or given with
``--root``). Paths in it are relative to the root; outputs must stay inside the repo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, ProjectNotFound
from .fields import FREE_TABLES, TABLES, TOP_FIELDS, Field, FieldProblem, ranged, text
from .spec import builtin_defaults, check_table, merge
from .tomlsource import TomlDocument, read_toml

CONFIG_NAME = "trackspec.toml"
CACHE_ENV = "TRACKSPEC_CACHE_DIR"
MODEL_ENV = "TRACKSPEC_MODEL"
STATE_DIR_NAME = ".trackspec"


def _paths(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise FieldProblem("must be a folder or an array of folders (relative to the repo root)")
    return value


def _device(value: Any) -> str:
    if value not in ("auto", "cuda", "cpu"):
        raise FieldProblem(f"{value!r} is not a device; allowed: 'auto', 'cuda', 'cpu'")
    return value


PROJECT_FIELDS: dict[str, Field] = {
    "specs": Field(_paths, ["."], "folders searched (recursively) for *.trackspec files"),
    "assets": Field(text(required=True), "assets/music", "where <genre>/<name>.<ext> files are written"),
    "index": Field(text(required=True), "assets/music/index.json", "the asset index the engine reads"),
    "cache": Field(text(required=True), None, "cache folder; default: the user cache dir"),
    "device": Field(_device, "auto", "auto (CUDA when present), cuda or cpu"),
    "max_duration": Field(ranged(0.0, 3600.0, lo_open=True), 300.0, "longest duration a spec may ask for"),
    "batch_size": Field(ranged(1, 256, integer=True), 8, "most tracks generated together in one batch"),
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
    spec_defaults: dict[str, Any] = field(default_factory=dict)
    digest: str = ""

    @property
    def staging_dir(self) -> Path:
        """Where files bound for the assets folder are written before their rename."""
        return self.state_dir / "tmp"


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding ``trackspec.toml``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise ProjectNotFound(
        f"no {CONFIG_NAME} in {start} or any folder above it; run `trackspec init` in your game "
        "repo, or pass --root"
    )


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("trackspec", appauthor=False))


def _inside(root: Path, path: Path, doc: TomlDocument, key: str) -> Path:
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ConfigError(doc.locate(key), f"{path} is outside the game repo ({root})", key)
    return resolved


def load_config(root: Path) -> ProjectConfig:
    """Read ``root/trackspec.toml``; environment overrides apply (``TRACKSPEC_CACHE_DIR``)."""
    from .fsutil import sha256_bytes

    root = root.resolve()
    path = root / CONFIG_NAME
    if not path.is_file():
        raise ProjectNotFound(f"{root} has no {CONFIG_NAME}; run `trackspec init` there first")
    doc = read_toml(path, ConfigError)
    values = check_table(doc, doc.data, PROJECT_FIELDS, (), ConfigError, free_tables=("defaults",))
    default_fields = {k: f for k, f in TOP_FIELDS.items() if k != "name"}
    spec_defaults_own = check_table(doc, values.get("defaults", {}), default_fields, ("defaults",),
                                    ConfigError, TABLES, FREE_TABLES)
    settings = {k: f.default for k, f in PROJECT_FIELDS.items()}
    settings.update({k: v for k, v in values.items() if k != "defaults"})

    assets = _inside(root, root / settings["assets"], doc, "assets")
    index = _inside(root, root / settings["index"], doc, "index")
    if index.suffix != ".json":
        raise ConfigError(doc.locate("index"), "the index must be a .json file", "index")
    env_cache = os.environ.get(CACHE_ENV)
    if env_cache:
        cache = Path(env_cache).expanduser()
    elif settings["cache"]:
        cache = (root / Path(settings["cache"]).expanduser())
    else:
        cache = default_cache_dir()
    spec_dirs = [_inside(root, root / d, doc, "specs") for d in settings["specs"]]
    if "prompt" in spec_defaults_own:
        raise ConfigError(doc.locate("defaults", "prompt"), "a prompt belongs in each spec, not in [defaults]",
                          "defaults.prompt")
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
        spec_defaults=merge(builtin_defaults(), spec_defaults_own),
        digest=sha256_bytes(doc.text.encode()),
    )
