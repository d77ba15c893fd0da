"""Read a TOML file and say where things are in it.

``tomllib`` parses fast but forgets positions, and users need ``file:line:col`` in every
error. So the document is parsed with ``tomllib`` and, only when an error must be
reported, the source is scanned for the line of the offending key or table.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, Location
from .fsutil import UnsafePath, read_regular
from .grammar import MAX_DEPTH, depth

#: Largest TOML file read (a spec or trackspec.toml is a few hundred bytes).
MAX_TOML_BYTES = 32 << 20

_SYNTAX_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_SYNTAX_END = re.compile(r"\s*\(at end of document\)\s*$")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^(\s*)((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", text)
    return tuple(next(p for p in part if p) if any(part) else "" for part in parts)


@dataclass
class TomlDocument:
    """A parsed TOML file that can point at its own keys."""

    path: Path
    text: str
    data: dict[str, Any]

    def locate(self, *key_path: str) -> Location:
        """Location of ``key_path`` (a key, or a table header); the file alone if not found."""
        table: tuple[str, ...] = ()
        in_multiline: str | None = None
        best: Location | None = None
        for number, line in enumerate(self.text.splitlines(), start=1):
            if in_multiline:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            header = _HEADER.match(line)
            if header and not line.lstrip().startswith(("#",)) and "=" not in line.split("]")[0]:
                table = _split_dotted(header.group(1))
                if table == tuple(key_path):
                    return Location(self.path, number, line.index("[") + 1)
                if best is None and key_path[: len(table)] == table and table:
                    best = Location(self.path, number, line.index("[") + 1)
                continue
            key = _KEY.match(line)
            if key:
                full = table + _split_dotted(key.group(2))
                if full == tuple(key_path):
                    return Location(self.path, number, len(key.group(1)) + 1)
                if len(full) < len(key_path) and key_path[: len(full)] == full and best is None:
                    best = Location(self.path, number, len(key.group(1)) + 1)
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_multiline = quote
        return best or Location(self.path)


def read_toml(path: Path, error: type[InputError]) -> TomlDocument:
    """Parse ``path``; syntax and encoding problems become ``error`` with line and column."""
    try:
        raw = read_regular(path, MAX_TOML_BYTES)  # a FIFO or device never blocks, never streams forever
    except UnsafePath as exc:
        raise error(Location(path), str(exc).removeprefix(f"{path}: ")) from None
    except OSError as exc:
        raise error(Location(path), f"cannot read file: {exc.strerror or exc}") from exc
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(Location(path, line), "file is not valid UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
        if depth(data) > MAX_DEPTH:
            raise RecursionError
    except RecursionError:
        raise error(
            Location(path),
            f"TOML nested more than {MAX_DEPTH} levels deep (arrays or tables inside each other); flatten it",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _SYNTAX_POS.search(message)
        location = Location(path)
        if match:
            location = Location(path, int(match.group(1)), int(match.group(2)))
            message = message[: match.start()]
        elif match := _SYNTAX_END.search(message):
            location = Location(path, text.count("\n") + (0 if text.endswith("\n") else 1))
            message = message[: match.start()] + " at the end of the file"
        raise error(location, f"TOML syntax error: {message}") from exc
    return TomlDocument(path=path, text=text, data=data)
