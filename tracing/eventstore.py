"""The portal's reads and writes of stored events, through the runtime's own store interface.

The event browser reads with ``Store.read_range`` and test events are appended with the
runtime's publish path (``meshruntime.publish``), so whatever engine a topic lives on, the portal
sees and writes what a runtime would, and a new engine gets the browser without a line here.

The store is the runtimes' Redis (``REDIS_URL`` under ``MESH_KEY_PREFIX``), as for the
subscription page's delivery state: the portal holds no other store's credentials. A store is
opened for one operation and closed after it: portal pages are rare next to publishes, and an
asyncio client must not outlive the event loop ``async_to_sync`` ran it on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings

from meshruntime.store import Store, StoreError, open_store
from topics.models import EventStore, Topic

__all__ = ["StoreUnavailable", "with_store"]

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The topic's store cannot be reached or read; the message says which and why."""


def _open(name: str) -> Store:
    return open_store(settings.REDIS_URL, prefix=settings.MESH_KEY_PREFIX, name=name,
                      journey_ttl_seconds=settings.MESH_JOURNEY_TTL)


def with_store(topic: Topic, operation: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``operation(store)`` on ``topic``'s store, synchronously; raises :class:`StoreUnavailable`."""
    if topic.store.kind != EventStore.REDIS:
        raise StoreUnavailable(f"the portal reads Redis Streams stores only; {topic.store} is "
                               f"{topic.store.get_kind_display()}")

    async def run() -> T:
        store = _open(topic.store.name)
        try:
            return await operation(store)
        finally:
            await store.close()

    try:
        return async_to_sync(run)()
    except (StoreError, OSError) as error:
        raise StoreUnavailable(f"the event store {topic.store} did not answer: {error}") from error
