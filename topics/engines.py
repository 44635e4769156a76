"""The portal's window on the event stores: the engines the runtimes use, reached from here.

The portal reads what only an engine knows (a topic's length, a subscription's lag and pending
count, dead letters) and acts on it (redelivery) through the very :class:`~meshruntime.store.Store`
code the runtimes run, so a page shows what the engine reports. It reaches a catalog store by
the store's *connection name*, with URLs from its own settings: ``MESH_STORES`` takes the same
``NAME=URL`` items as a runtime's ``--store`` (separated by spaces), and the connection
``default`` is the portal's ``REDIS_URL`` unless given there (the one Redis of an embedded
mesh). An operator gives the portal only the connections whose pages it should fill; a store
without one shows as such, and nothing the portal needs for the runtimes travels in MeshConfig.

Engines are asynchronous and the portal's views are not: :func:`call` runs one short
conversation with an engine on a loop of its own (a view's thread has none), opening and closing
the engine around it, within a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from django.conf import settings

from meshruntime.store import Store, StoreError, StoreUnsupported, open_store, redact
from meshruntime.store.storeset import DEFAULT_CONNECTION, parse_connections

from .models import EventStore, Topic

__all__ = ["EngineUnavailable", "TopicFigures", "call", "check_store_move", "connections", "describe",
           "topic_figures", "undelivered"]

T = TypeVar("T")
DEADLINE_S = 8.0


class EngineUnavailable(Exception):
    """The portal cannot reach a store's engine (no connection here, or the server is away)."""


def connections() -> dict[str, str]:
    """The portal's store connections: ``MESH_STORES``, and ``default`` = ``REDIS_URL``."""
    out = parse_connections(getattr(settings, "MESH_STORES", "").split(), source="MESH_STORES")
    out.setdefault(DEFAULT_CONNECTION, settings.REDIS_URL)
    return out


def describe(store: EventStore) -> str:
    """Where the portal reaches a store, fit for a page (password hidden), or why it cannot."""
    url = connections().get(store.connection)
    return redact(url) if url else f"no connection {store.connection!r} in the portal's MESH_STORES"


def call(store: EventStore, work: Callable[[Store], Awaitable[T]], *, deadline_s: float = DEADLINE_S) -> T:
    """Run ``work(engine)`` against a catalog store's engine and return its result; raises
    :class:`EngineUnavailable` naming the store when there is no connection for it, its URL is
    another kind's, or the engine fails (:class:`~meshruntime.store.StoreUnsupported` passes
    through: the engine cannot do that at all)."""
    url = connections().get(store.connection)
    if url is None:
        raise EngineUnavailable(f"the portal has no connection {store.connection!r} for event store {store.name!r}: "
                                f"add {store.connection}=<url> to its MESH_STORES setting")
    try:
        engine = open_store(url, prefix=settings.MESH_KEY_PREFIX, name=store.name)
    except ValueError as error:
        raise EngineUnavailable(str(error)) from None
    if engine.kind != store.kind:
        raise EngineUnavailable(f"event store {store.name!r} is {store.kind} in the catalog, but the portal's "
                                f"connection {store.connection!r} is a {engine.kind} URL")

    async def run() -> T:
        try:
            async with asyncio.timeout(deadline_s):
                return await work(engine)
        finally:
            await engine.close()

    try:
        return asyncio.run(run())
    except TimeoutError:
        raise EngineUnavailable(f"event store {store.name!r} did not answer within {deadline_s:g} s") from None
    except StoreUnsupported:
        raise
    except StoreError as error:
        raise EngineUnavailable(str(error)) from error


@dataclass(frozen=True, slots=True)
class TopicFigures:
    """What an engine reports of one topic (None: it cannot tell, e.g. MQTT keeps nothing)."""

    length: int | None  # events it holds now: what its retention has left
    oldest_ms: int | None  # when the oldest of them was appended
    backlog: int | None  # events not yet delivered to the subscription furthest behind (its lag)
    held: int | None  # delivered and not yet acknowledged, over its subscriptions (None: unknown)

    @property
    def oldest(self) -> datetime | None:
        return None if self.oldest_ms is None else datetime.fromtimestamp(self.oldest_ms / 1000, UTC)


def topic_figures(store: EventStore, topics: dict[str, list[str]]) -> dict[str, TopicFigures]:
    """Per topic (name -> its subscriptions' ids) what the engine reports, in one visit."""

    async def work(engine: Store) -> dict[str, TopicFigures]:
        out = {}
        for name, groups in topics.items():
            try:
                length = await engine.length(name)
                oldest = await engine.read_range(name, count=1)
            except StoreUnsupported:
                out[name] = TopicFigures(None, None, None, None)
                continue
            infos = [info for group in groups if (info := await engine.group_info(name, group)) is not None]
            lags = [info.lag for info in infos]
            pendings = [info.pending for info in infos]
            out[name] = TopicFigures(
                length, oldest[0].time_ms if oldest else None,
                None if None in lags else max(lags, default=0),
                None if None in pendings else sum(pendings))
        return out

    return call(store, work)


def undelivered(topic: Topic) -> int:
    """Events of ``topic`` some subscription has not acknowledged yet, on the topic's store now
    (lag and held events, summed over its subscriptions); raises :class:`EngineUnavailable`
    when the store cannot be asked or cannot tell."""
    groups = [f"sub-{pk}" for pk in topic.subscriptions.values_list("pk", flat=True)]
    if not groups:
        return 0

    async def work(engine: Store) -> int:
        total = 0
        for group in groups:
            info = await engine.group_info(topic.name, group)
            if info is None:
                continue
            if info.lag is None:
                raise EngineUnavailable(f"event store {topic.store.name!r} cannot tell how many events of "
                                        f"{topic.name!r} subscription {group} has not acknowledged")
            # pending is None where the lag counts what members hold (Kafka: from the commit on)
            total += info.lag + (info.pending or 0)
        return total

    return call(topic.store, work)


def check_store_move(topic: Topic, store: EventStore | None) -> str | None:
    """Why ``topic`` may not move to ``store`` now, or None: a topic moves to another store only
    when no subscription has events of it left to deliver (they would be left behind), and only
    to a store that holds topics."""
    if store is None:
        return None
    if store.kind not in EventStore.HOLDS_TOPICS:
        return (f"{store.name} is an MQTT broker, which keeps no events: a topic lives on a Redis, Kafka or "
                "NATS store (MQTT carries events in and out of topics)")
    if topic.pk is None or topic.store_id == store.pk:
        return None
    how = ("let its subscriptions deliver every event (or skip them to now on their Delivery tabs), pause "
           "publishing to it, then move it")
    try:
        left = undelivered(topic)
    except EngineUnavailable as error:
        return f"cannot tell whether {topic.name} has undelivered events on {topic.store.name} ({error}); {how}"
    if left:
        return (f"{topic.name} has {left} undelivered event{'s' if left != 1 else ''} on {topic.store.name}; "
                f"to drain it, {how}")
    return None
