"""The object-store seam: the few operations the team cache needs from any store.

A store holds named objects (names are ``/``-separated, relative to the configured
prefix). Failures are raised as ``StoreError`` with a ``cause`` the session reports in
words (``unreachable``, ``auth``, ``denied``, ``missing_bucket``, ``error``), so the
tier and the build never see a client library's exceptions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import TrackspecError


class StoreError(TrackspecError):
    """The store could not be used; ``cause`` classifies why, the message says it for people."""

    def __init__(self, cause: str, message: str):
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class ObjectInfo:
    name: str
    size: int
    modified: float


class ObjectStore(Protocol):
    #: Where the objects live, for messages (``s3://bucket/prefix``).
    location: str

    def get_bytes(self, name: str) -> bytes | None:
        """The object's content, or ``None`` when there is no such object."""

    def download(self, name: str, target: Path) -> bool:
        """Write the object to ``target``; ``False`` when there is no such object."""

    def exists(self, name: str) -> bool: ...

    def put_if_absent(self, name: str, source: Path | bytes) -> bool:
        """Create the object only if no object of that name exists (atomic, never overwrites).

        Returns ``False`` when one already existed (another writer won the race)."""

    def delete(self, name: str) -> None: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose name starts with ``prefix``."""
