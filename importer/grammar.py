"""The grammar every string read from a file must match before it is used.

Index entries, audition records, daemon requests, the state file, remote manifests and
object names, licence declarations and specs are written by trackspec, but anybody who
can write the repo, the state folder, the bucket or the model folder can craft them. So
a value is checked here before it builds a path, a tag, a command line or a decision: a
key is 64 lowercase hex digits, a name full-matches its pattern, a number is finite and
in range, a licence is a licence identifier. A value that fails raises ``GrammarError``
naming the file and the field (never used as a path).

Standard library only: the fast path and the cache import it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,100}")
FORMAT_PATTERN = re.compile(r"[a-z0-9]{1,8}")
LICENCE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}")
#: A file name inside a cache entry or a request folder: no separator, not hidden.
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
#: The formats trackspec publishes: only files with these suffixes are ever deleted.
PUBLISHED_FORMATS = ("ogg", "mp3", "wav", "flac")
#: Most nesting that a spec, the index or any state file may have (the deepest trackspec
#: itself writes is 6); deeper inputs are refused before anything recurses over them.
MAX_DEPTH = 32


class GrammarError(ValueError):
    """A value read from a file does not match its grammar; the message names file and field."""


def is_key(value: Any) -> bool:
    return isinstance(value, str) and KEY_PATTERN.fullmatch(value) is not None


def is_name(value: Any) -> bool:
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def is_file_name(value: Any) -> bool:
    return isinstance(value, str) and FILE_NAME_PATTERN.fullmatch(value) is not None and ".." not in value


def is_licence(value: Any) -> bool:
    return isinstance(value, str) and LICENCE_PATTERN.fullmatch(value) is not None


def _fail(where: str, field: str, what: str, value: Any) -> GrammarError:
    shown = repr(value) if isinstance(value, (int, float, bool)) or value is None else type(value).__name__
    if isinstance(value, str):
        shown = f"a {len(value)}-character string"
    return GrammarError(f"{where}: {field}: expected {what}, found {shown}")


def key(value: Any, where: str, field: str) -> str:
    """``value`` if it is a 64-hex key (sha256), else ``GrammarError``."""
    if not is_key(value):
        raise _fail(where, field, "a 64-character lowercase hex digest", value)
    return value


def name(value: Any, where: str, field: str) -> str:
    if not is_name(value):
        raise _fail(where, field, "a name of a-z, 0-9, _ and - (at most 100 characters)", value)
    return value


def number(value: Any, where: str, field: str, low: float, high: float, integer: bool = False) -> float:
    """A finite number (an ``int`` when ``integer``) within ``[low, high]``; bools are not numbers."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not low <= value <= high:
        what = "an integer" if integer else "a finite number"
        raise _fail(where, field, f"{what} from {low:g} to {high:g}", value)
    return value


def licence(value: Any, where: str, field: str) -> str:
    if not is_licence(value):
        raise _fail(where, field, "a licence identifier such as CC-BY-4.0 (letters, digits, . + -)", value)
    return value


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed document, walked without recursion; stops past ``limit``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> Any:
    if depth(value, limit) > limit:
        raise GrammarError(f"{where}: nested more than {limit} levels deep")
    return value


_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?::[^/@\s]*)?@")


def redact_url(text: str) -> str:
    """``text`` with the user info of every URL in it (``user:password@``) replaced by ``***@``."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}***@", text)


def has_userinfo(url: str) -> bool:
    return _URL_PASSWORD.search(url) is not None


#: Environment variables whose values are secrets: never printed, logged or written.
SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)


def redact(text: str) -> str:
    """``text`` without secrets: URL passwords and the values of ``SECRET_ENV`` variables."""
    import os

    text = redact_url(text)
    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= 4 and value in text:
            text = text.replace(value, f"<{name}>")
    return text
