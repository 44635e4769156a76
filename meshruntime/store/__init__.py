"""Event stores behind one interface; see :mod:`meshruntime.store.base`."""

from __future__ import annotations

from meshruntime.keys import DEFAULT_PREFIX

from .base import (
    NO_RETENTION,
    AppendEntry,
    ClaimResult,
    GroupInfo,
    JourneyStep,
    PendingEntry,
    Retention,
    Store,
    StoredEntry,
    StoreError,
)
from .redis_streams import RedisStreamsStore


def open_store(url: str, *, prefix: str = DEFAULT_PREFIX, **kwargs) -> Store:
    """The store for an event-store URL (``redis://`` / ``rediss://`` / ``unix://`` today)."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStreamsStore.from_url(url, prefix=prefix, **kwargs)
    raise ValueError(f"no event store engine for {url.split(':', 1)[0]!r} URLs (supported: redis)")


__all__ = [
    "NO_RETENTION", "AppendEntry", "ClaimResult", "GroupInfo", "JourneyStep", "PendingEntry",
    "RedisStreamsStore", "Retention", "Store", "StoreError", "StoredEntry", "open_store",
]
