"""The error hierarchy: every failure a user can act on is one of these.

Messages name the file, line and field where there is one, and say what to do. The CLI
prints ``str(error)`` and never a traceback for these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .exit_codes import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE


class TrackspecError(Exception):
    """Base class: an error with a message meant for the user, and the exit code it means
    when it ends a command (``cli`` maps every error through ``exit_code``, in one place)."""

    exit_code = EXIT_FAILED


@dataclass
class Location:
    """Where in a TOML file a problem sits (1-based line and column; 0 when unknown)."""

    path: Path
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.path}:{self.line}:{self.column}"
        if self.line:
            return f"{self.path}:{self.line}"
        return str(self.path)


class InputError(TrackspecError):
    """A spec or config file is wrong: ``path:line:col: field: message``."""

    def __init__(self, location: Location, message: str, field: str | None = None):
        self.location = location
        self.field = field
        self.message = message
        prefix = f"{location}: "
        if field:
            prefix += f"{field}: "
        super().__init__(prefix + message)


class SpecError(InputError):
    """A ``.trackspec`` file is invalid."""


class ConfigError(InputError):
    """``trackspec.toml`` is invalid."""

    exit_code = EXIT_USAGE


class ProjectNotFound(TrackspecError):
    """No ``trackspec.toml`` above the working directory."""

    exit_code = EXIT_USAGE


class ModelError(TrackspecError):
    """A model cannot be found, downloaded or loaded."""


class GenerationError(TrackspecError):
    """Generation failed for a reason other than the model's availability."""


class EncodeError(TrackspecError):
    """ffmpeg failed, or its output did not decode to the expected length."""


class CacheCorrupt(TrackspecError):
    """A cache entry failed verification; it is removed and rebuilt."""


class IndexCorrupt(TrackspecError):
    """The asset index exists but cannot be read; it is never silently reset."""

    exit_code = EXIT_USAGE


class LockBusy(TrackspecError):
    """Another trackspec process holds the repository lock."""

    exit_code = EXIT_LOCKED
