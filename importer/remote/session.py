"""What a build or a command holds of the team cache for one run.

The session opens the store on first use (so boto3 is imported only when the local
cache missed, or a command asks), fetches and pushes several entries at once, and owns
the failure policy: the first store failure (endpoint down, credentials refused, access
denied, timeout) becomes ONE warning and the tier is not consulted again in this run, so
the build goes on locally; with ``require`` it raises ``RemoteError`` instead (exit 1).
A corrupt remote entry is reported and treated as a miss, and remembered so that a push
from this run repairs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from ..cache import CacheEntry, Kind, LocalCache
from ..errors import TrackspecError
from .settings import RemoteSettings
from .store import StoreError
from .tier import RemoteCorrupt, RemoteTier

log = logging.getLogger(__name__)

#: Entries moved at once: each is a few small requests, so latency, not bandwidth, is the limit.
WORKERS = 8

_CAUSES = {
    "unreachable": "is unreachable",
    "auth": "refused the credentials",
    "denied": "denied access",
    "missing_bucket": "has no such bucket",
    "error": "failed",
}


class RemoteError(TrackspecError):
    """The team cache could not be used and the run requires it (``--require-remote``, push/pull)."""


class RemoteSession:
    def __init__(
        self,
        settings: RemoteSettings,
        cache: LocalCache,
        require: bool = False,
        opener: Callable[[RemoteSettings], RemoteTier] | None = None,
    ):
        self.settings = settings
        self.cache = cache
        self.require = require
        self._opener = opener or open_tier
        self._tier: RemoteTier | None = None
        self._lock = threading.Lock()
        #: The failure that switched the tier off for this run (``None`` while it works).
        self.failure: str | None = None
        self.corrupt: set[tuple[Kind, str]] = set()
        self.fetched = 0
        self.pushed = 0

    @property
    def url(self) -> str:
        return self.settings.url

    def tier(self) -> RemoteTier:
        with self._lock:
            if self._tier is None:
                self._tier = self._opener(self.settings)
            return self._tier

    # ------------------------------------------------------------------ policy
    def describe(self, exc: StoreError, doing: str) -> str:
        return f"team cache {self.url} {_CAUSES.get(exc.cause, 'failed')} while {doing}: {exc}"

    def _failed(self, exc: StoreError, doing: str) -> None:
        """Switch the tier off for this run: one warning, or ``RemoteError`` when required."""
        message = self.describe(exc, doing)
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = message
        if self.require:
            raise RemoteError(f"{message} (--require-remote)")
        if first:
            log.warning("%s; building locally without it", message)

    # ------------------------------------------------------------------ reading
    def fetch_many(self, wanted: Iterable[tuple[Kind, str]]) -> dict[tuple[Kind, str], CacheEntry]:
        """Fetch what the store has of ``wanted`` into the local cache (misses are left out)."""
        wanted = list(dict.fromkeys(wanted))
        if not wanted or self.failure:
            return {}
        try:
            tier = self.tier()
        except StoreError as exc:
            self._failed(exc, "connecting")
            return {}

        def one(item: tuple[Kind, str]) -> CacheEntry | None:
            if self.failure:
                return None
            kind, key = item
            try:
                return tier.fetch(kind, key, self.cache)
            except RemoteCorrupt as exc:
                log.warning("team cache: %s; ignored, the track is built locally", exc)
                with self._lock:
                    self.corrupt.add(item)
                return None
            except StoreError as exc:
                self._failed(exc, f"fetching {kind} entry {key[:12]}")
                return None

        with ThreadPoolExecutor(min(WORKERS, len(wanted))) as pool:
            found = {
                item: entry for item, entry in zip(wanted, pool.map(one, wanted), strict=True) if entry is not None
            }
        self.fetched += len(found)
        return found

    # ------------------------------------------------------------------ writing
    def push_many(self, items: Iterable[tuple[Kind, str]]) -> int:
        """Upload the local entries ``items`` that the store lacks; returns how many went up."""
        items = list(dict.fromkeys(items))
        if not items or self.failure:
            return 0
        try:
            tier = self.tier()
        except StoreError as exc:
            self._failed(exc, "connecting")
            return 0

        def one(item: tuple[Kind, str]) -> bool:
            if self.failure:
                return False
            kind, key = item
            entry = self.cache.get(kind, key)
            if entry is None:
                return False
            try:
                return tier.push(kind, entry, repair=item in self.corrupt)
            except StoreError as exc:
                self._failed(exc, f"pushing {kind} entry {key[:12]}")
                return False

        with ThreadPoolExecutor(min(WORKERS, len(items))) as pool:
            pushed = sum(pool.map(one, items))
        self.pushed += pushed
        return pushed


def open_tier(settings: RemoteSettings) -> RemoteTier:
    """The tier for ``settings`` (S3 is the only store so far; others would be chosen by URL scheme)."""
    from .s3 import S3Store

    return RemoteTier(S3Store(settings))
