"""The event stores one runtime reaches, and which topic lives on which.

The catalog names a store for every topic and gives each store a kind and a *connection name*
(MeshConfig ``stores``: ``{"name": "orders", "kind": "kafka", "connection": "orders"}``); the
runtime holds the connections, from its own settings (``--store orders=kafka://broker:9092``),
so that no credential ever travels in the document. Catalog stores that share a connection
share one engine client.

:class:`StoreSet` is what the publish path and the delivery engine see: it is a
:class:`~meshruntime.store.base.Store` for appends (each event to its topic's store) and maps a
topic to its store for everything else. A catalog store this runtime has no (usable) connection
for is *missing*: its topics are refused (503) until the runtime has one, and the heartbeat says
which and why. ``parse_connections`` reads the ``NAME=URL`` settings.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from meshruntime.keys import DEFAULT_PREFIX

from . import ENGINES, open_store
from .base import AppendEntry, Journal, JourneyStep, Store, StoreError, redact
from .redis_streams import RedisStreamsStore

__all__ = ["DEFAULT_CONNECTION", "StoreMissing", "StoreSet", "open_stores", "parse_connections",
           "read_connections_file"]

log = logging.getLogger(__name__)

DEFAULT_CONNECTION = "default"  # what a document without connection names uses, and --store-url gives
_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")  # meshconfig-1.json's "name"


class StoreMissing(StoreError):
    """A topic's store has no usable connection in this runtime (names the store and why)."""


def parse_connections(specs: Iterable[str], *, source: str = "--store") -> dict[str, str]:
    """``NAME=URL`` items as a dict; a malformed item or a name given twice is a ValueError that
    quotes it (its password hidden)."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, url = spec.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not url:
            raise ValueError(f"{source}: {redact(spec)!r} is not NAME=URL (e.g. orders=kafka://broker:9092)")
        if not _NAME.match(name):
            raise ValueError(f"{source}: {name!r} is not a store connection name (letters, digits, '.', '-', '_')")
        if name in out and out[name] != url:
            raise ValueError(f"{source}: the connection {name!r} is given twice")
        out[name] = url
    return out


def read_connections_file(path: Path) -> dict[str, str]:
    """A small file of ``NAME=URL`` lines (``#`` starts a comment), as ``--store`` items."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"store connections file {path}: {error.strerror or error}") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return parse_connections([line for line in lines if line], source=f"store connections file {path}")


class StoreSet:
    """The runtime's stores by catalog name, opened from its connections as documents name them.

    Engines are opened (not connected) when a document first names a store on their connection,
    and kept for the life of the set: a document that stops naming a store does not close it,
    since a delivery may still be finishing there. ``close`` closes them all (and the journal,
    when the set opened it: see :func:`open_stores`), except the engine given to :meth:`of`.
    """

    mesh: RedisStreamsStore | None = None  # the mesh's Redis, when open_stores made the set

    def __init__(
        self,
        connections: Mapping[str, str] | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        journal: Journal | None = None,
        visibility_timeout_s: float = 30.0,
        journey_ttl_seconds: int = 86_400,
        opened: Mapping[str, Store] | None = None,
    ) -> None:
        """``connections``: connection name -> URL. ``opened``: engines already made for some
        connections (the mesh's Redis, when a connection is it). ``journal`` receives journey
        steps of the engines that are not the mesh's Redis."""
        self.connections = dict(connections or {})
        self.prefix = prefix
        self.journal = journal
        self.visibility_timeout_s = visibility_timeout_s
        self.journey_ttl_seconds = journey_ttl_seconds
        self._engines: dict[str, Store] = dict(opened or {})  # by connection name
        self._everything: Store | None = None
        self.stores: dict[str, Store] = {}  # catalog name -> engine
        self.kinds: dict[str, tuple[str, str]] = {}  # catalog name -> (kind, connection)
        self.missing: dict[str, str] = {}  # catalog name -> why it cannot be used
        self._by_topic: dict[str, Store] = {}
        self._refused: dict[str, str] = {}  # topic -> why (its store is missing)
        self._refused_stores: set[str] = set()
        self._single: Store | None = None  # the one engine every topic lives on, when there is one
        self._journeys: set[asyncio.Task] = set()  # journey writes after appends elsewhere (append_many)

    @classmethod
    def of(cls, store: Store, *, journal: Journal | None = None) -> StoreSet:
        """One engine for every topic, whatever store the document names (tests, benchmarks)."""
        stores = cls(journal=journal, prefix=getattr(store, "prefix", DEFAULT_PREFIX),
                     visibility_timeout_s=getattr(store, "visibility_timeout_s", 30.0))
        stores._everything = stores._single = store
        return stores

    # -- the document ----------------------------------------------------------------------------
    def apply(self, stores: Sequence[Mapping[str, Any]], topics: Iterable[tuple[str, str]]) -> None:
        """Take a document's ``stores`` and its topics as (topic, store name) pairs. Never raises:
        a store that cannot be used is recorded in :attr:`missing`, its topics refused."""
        engines: dict[str, Store] = {}
        kinds: dict[str, tuple[str, str]] = {}
        missing: dict[str, str] = {}
        for entry in stores:
            name, kind = entry["name"], entry["kind"]
            connection = entry.get("connection") or DEFAULT_CONNECTION
            kinds[name] = (kind, connection)
            if self._everything is not None:
                engines[name] = self._everything
                continue
            try:
                engine = self._engine(connection)
            except ValueError as error:
                missing[name] = f"event store {name!r}: its connection {connection!r} is unusable ({error})"
                continue
            if engine is None:
                missing[name] = (f"event store {name!r} ({kind}): this runtime has no connection {connection!r} "
                                 f"(start it with --store {connection}=URL)")
            elif engine.kind != kind:
                missing[name] = (f"event store {name!r} is {kind} in the catalog, but this runtime's connection "
                                 f"{connection!r} is a {engine.kind} URL")
            else:
                engines[name] = engine
        by_topic: dict[str, Store] = {}
        refused: dict[str, str] = {}
        refused_stores: set[str] = set()
        for topic, store_name in topics:
            engine = engines.get(store_name)
            if engine is not None:
                by_topic[topic] = engine
            else:
                refused[topic] = missing.get(store_name, f"event store {store_name!r} is not in the catalog")
                refused_stores.add(store_name)
        if self._everything is not None:
            refused = {}
        self.stores, self.kinds, self.missing = engines, kinds, missing
        self._by_topic, self._refused, self._refused_stores = by_topic, refused, refused_stores
        if self._everything is None:
            used = {id(engine): engine for engine in by_topic.values()}
            self._single = next(iter(used.values())) if len(used) == 1 else None

    def apply_document(self, doc: Mapping[str, Any]) -> None:
        self.apply(doc.get("stores", ()), ((t["name"], t["store"]) for t in doc.get("topics", ())))

    def _engine(self, connection: str) -> Store | None:
        engine = self._engines.get(connection)
        if engine is None:
            url = self.connections.get(connection)
            if url is None:
                return None
            extra: dict[str, Any] = {"journal": self.journal}
            if _kind_of(url) == "redis":
                extra["journey_ttl_seconds"] = self.journey_ttl_seconds
            engine = open_store(url, prefix=self.prefix, name=connection,
                                visibility_timeout_s=self.visibility_timeout_s, **extra)
            self._engines[connection] = engine
        return engine

    # -- lookups ---------------------------------------------------------------------------------
    def store_for(self, topic: str) -> Store:
        """The engine a topic lives on; :class:`StoreMissing` (naming the store) when there is none."""
        engine = self._by_topic.get(topic) or self._everything
        if engine is None:
            raise StoreMissing(self._refused.get(topic, f"topic {topic!r} is not in the applied configuration"))
        return engine

    @property
    def missing_in_use(self) -> dict[str, str]:
        """The missing stores some topic lives on (a store no topic uses stops nothing)."""
        used = set(self._refused_stores)
        return {name: why for name, why in self.missing.items() if name in used}

    @property
    def refused(self) -> Mapping[str, str]:
        """Topics that cannot be written here now (their store is missing), and why."""
        return self._refused

    @property
    def engines(self) -> list[Store]:
        """Every engine opened, each once."""
        out = {id(e): e for e in self._engines.values()}
        if self._everything is not None:
            out[id(self._everything)] = self._everything
        return list(out.values())

    # -- the Store surface of the publish path ---------------------------------------------------
    async def append_many(self, entries: Sequence[AppendEntry], *, journey: Sequence[JourneyStep] = ()) -> list[str]:
        """Each event to its topic's store, in order per store. A request whose events span two
        stores is not atomic across them (no engine can take part in another's transaction): a
        failure is raised, and what the other store took stays (the publisher retries; at least once).

        Journey steps ride in the append's round trip on the mesh's Redis. Appends elsewhere are
        answered once the engine has the events, and their steps are written to the journal
        then, without the publisher waiting for a second round trip: a journey is a trace, best
        effort (a lost step is a gap in it, never a lost event)."""
        single = self._single
        if single is not None:
            if not journey or self._carries_journeys(single):
                return await single.append_many(entries, journey=journey)
            ids = await single.append_many(entries)
            self._journal_later(journey)
            return ids
        groups: dict[int, tuple[Store, list[int], list[AppendEntry]]] = {}
        for index, entry in enumerate(entries):
            engine = self.store_for(entry.topic)
            group = groups.get(id(engine))
            if group is None:
                group = groups[id(engine)] = (engine, [], [])
            group[1].append(index)
            group[2].append(entry)
        if not groups:
            if journey:
                await self.record_journey(journey)
            return []
        parts = list(groups.values())
        carrier = next((n for n, (engine, _i, _p) in enumerate(parts) if self._carries_journeys(engine)), None)
        results = await asyncio.gather(
            *(engine.append_many(part, journey=journey if n == carrier else ())
              for n, (engine, _indexes, part) in enumerate(parts)),
            return_exceptions=True)
        ids = [""] * len(entries)
        for (_engine, indexes, _part), result in zip(parts, results, strict=True):
            if isinstance(result, BaseException):
                raise result if isinstance(result, StoreError) else StoreError(f"append failed: {result!r}")
            for index, position in zip(indexes, result, strict=True):
                ids[index] = position
        if carrier is None and journey:
            self._journal_later(journey)
        return ids

    def _carries_journeys(self, engine: Store) -> bool:
        """Whether the engine writes journey steps in its appends' own round trip (the mesh's Redis)."""
        return engine is self.mesh or (engine.kind == "redis" and getattr(engine, "journal", None) is None)

    def _journal_later(self, steps: Sequence[JourneyStep]) -> None:
        task = asyncio.get_running_loop().create_task(self._write_journey(steps))
        self._journeys.add(task)
        task.add_done_callback(self._journeys.discard)

    async def _write_journey(self, steps: Sequence[JourneyStep]) -> None:
        try:
            await self.record_journey(steps)
        except StoreError as error:
            log.warning("journey steps of %d events not written: %s", len({s.event_id for s in steps}), error)

    async def drain(self) -> None:
        """Wait for the journey writes still under way (shutdown, tests)."""
        while self._journeys:
            await asyncio.gather(*list(self._journeys), return_exceptions=True)

    async def record_journey(self, steps: Sequence[JourneyStep]) -> None:
        target = self.journal or self._single or next(iter(self._engines.values()), None)
        if target is not None and steps:
            await target.record_journey(steps)

    async def connect(self, names: Iterable[str] | None = None) -> None:
        """Reach the engines of the named catalog stores (all in use when None): raises the first
        :class:`StoreError`, which names the store."""
        wanted = self.stores if names is None else {n: self.stores[n] for n in names if n in self.stores}
        seen: set[int] = set()
        for engine in wanted.values():
            if id(engine) not in seen:
                seen.add(id(engine))
                await engine.connect()

    async def reachability(self) -> dict[str, dict[str, Any]]:
        """Per catalog store: kind, connection and ``reachable`` (or why not): the heartbeat's ``stores``."""
        engines = {id(e): e for e in self.stores.values()}
        answers = await asyncio.gather(*(e.ping() for e in engines.values()), return_exceptions=True)
        up = {key: answer is True for key, answer in zip(engines, answers, strict=True)}
        out: dict[str, dict[str, Any]] = {}
        for name, (kind, connection) in sorted(self.kinds.items()):
            if name in self.missing:
                out[name] = {"kind": kind, "connection": connection, "state": "missing", "error": self.missing[name]}
            else:
                ok = up.get(id(self.stores[name]), False)
                out[name] = {"kind": kind, "connection": connection, "state": "reachable" if ok else "unreachable"}
        return out

    async def ping(self) -> bool:
        """True when every engine a topic lives on answers (readiness)."""
        engines = {id(e): e for e in self._by_topic.values()} or {id(e): e for e in self.engines}
        answers = await asyncio.gather(*(e.ping() for e in engines.values()), return_exceptions=True)
        return all(answer is True for answer in answers)

    async def close(self) -> None:
        await self.drain()
        engines, self._engines = self._engines, {}
        closing = {id(e): e for e in engines.values()}
        if self.mesh is not None:
            closing[id(self.mesh)] = self.mesh
        for engine in closing.values():
            await engine.close()


def open_stores(
    connections: Mapping[str, str],
    *,
    mesh_url: str,
    prefix: str = DEFAULT_PREFIX,
    journey_ttl_seconds: int = 86_400,
    visibility_timeout_s: float = 30.0,
) -> StoreSet:
    """A runtime's stores from its connections, with the mesh's Redis (``mesh_url``: journeys,
    leases, status, replies) as ``stores.mesh``. A Redis connection at the mesh's URL is that
    very client, and carries journeys in its appends' round trips; every other engine hands
    them to it. Raises ValueError for a malformed mesh URL."""
    mesh: RedisStreamsStore | None = None
    opened: dict[str, Store] = {}
    for name, url in connections.items():
        if url == mesh_url and _kind_of(url) == "redis":
            mesh = RedisStreamsStore.from_url(url, prefix=prefix, name=name, journey_ttl_seconds=journey_ttl_seconds,
                                              visibility_timeout_s=visibility_timeout_s)
            opened[name] = mesh
            break
    if mesh is None:
        mesh = RedisStreamsStore.from_url(mesh_url, prefix=prefix, name="mesh", journey_ttl_seconds=journey_ttl_seconds,
                                          visibility_timeout_s=visibility_timeout_s)
    stores = StoreSet(connections, prefix=prefix, journal=mesh, visibility_timeout_s=visibility_timeout_s,
                      journey_ttl_seconds=journey_ttl_seconds, opened=opened)
    stores.mesh = mesh
    return stores


def _kind_of(url: str) -> str:
    scheme = url.partition("://")[0] if "://" in url else url.partition(":")[0]
    for kind, (schemes, _where) in ENGINES.items():
        if scheme in schemes:
            return kind
    return ""
