"""The event browser: what a topic's store holds, newest first, a page at a time.

Every read goes through ``Store.read_range`` (bounded by count, position and time), so any
engine that implements it gets the browser. Two bounds keep a page cheap however large the topic:

- without a filter a page reads exactly the events it shows (the next page starts after the
  last one shown: positions, not offsets);
- with a filter (the CloudEvents Subscriptions dialects of ``meshruntime.filters``, which a
  subscription uses, and a text match on id, type, source and subject) a request examines at
  most ``MESH_EVENT_SCAN_LIMIT`` events and then says how far back it got, with a link that
  scans further from there.

Filters of someone who may not see the topic's payloads may only name the public attributes
(``tracing.access.PUBLIC_ATTRIBUTES``): matching on a masked extension would tell its value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings

from meshruntime.cloudevents import loads
from meshruntime.filters import compile_filters
from meshruntime.store import Store, StoredEntry
from topics.models import Topic

from . import eventstore
from .journeys import find_around, read_steps
from .presenting import event_context

__all__ = ["PAGE", "Page", "browse", "filter_attributes"]

PAGE = 50
_CHUNK = 500
TEXT_ATTRIBUTES = ("id", "type", "source", "subject")


@dataclass
class Row:
    event: dict[str, Any]
    is_target: bool = False


@dataclass
class Scan:
    """How far a filtered search got: examined events, back (or forward) to when, and where to go on."""

    scanned: int
    matches: int
    reached: datetime | None
    further: str | None  # the position to continue from; None when the topic is exhausted
    direction: str = "older"  # "older" (before=) or "newer" (after=)


@dataclass
class Page:
    rows: list[Row] = field(default_factory=list)
    older: str | None = None  # before= for the next page back
    newer: str | None = None  # after= for the page forward
    marker: int | None = None  # rows before this index are newer than the time asked for
    at: datetime | None = None
    scan: Scan | None = None
    target: str | None = None  # the event id looked for
    found: bool = False
    reads: int = 0  # entries read from the store by this request (the bound tests check)


def filter_attributes(filters: Any) -> set[str]:
    """Every attribute name a (valid) filter list compares."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, Mapping):
            for dialect, argument in node.items():
                if dialect in ("exact", "prefix", "suffix") and isinstance(argument, Mapping):
                    names.update(argument)
                else:
                    walk(argument)

    walk(filters)
    return names


def _attributes(entry: StoredEntry) -> dict[str, Any] | None:
    try:
        event = loads(entry.event)
    except orjson.JSONDecodeError:
        return None
    return {k: v for k, v in event.items() if k not in ("data", "data_base64")} if isinstance(event, dict) else None


def matcher(cleaned: Mapping[str, Any]) -> Callable[[StoredEntry], bool] | None:
    """The filters and text of the search as one test of a stored entry; None when there are none."""
    filters, text = cleaned.get("filters") or [], (cleaned.get("q") or "").casefold()
    if not filters and not text:
        return None
    matches = compile_filters(filters)

    def test(entry: StoredEntry) -> bool:
        attributes = _attributes(entry)
        if attributes is None or not matches(attributes):
            return False
        return not text or any(text in str(attributes.get(name, "")).casefold() for name in TEXT_ATTRIBUTES)

    return test


class _Reader:
    """Counts what a request reads, so the bounds are checked, not assumed."""

    def __init__(self, store: Store, topic: str) -> None:
        self.store, self.topic, self.reads = store, topic, 0

    async def read_range(self, topic: str, **kwargs) -> list[StoredEntry]:
        entries = await self.store.read_range(topic, **kwargs)
        self.reads += len(entries)
        return entries

    async def read(self, **kwargs) -> list[StoredEntry]:
        return await self.read_range(self.topic, **kwargs)


async def _scan(reader: _Reader, test, page: Page, *, newest_first: bool, limit: int, **bounds) -> list[StoredEntry]:
    """Matches among at most ``limit`` events from ``bounds`` on, up to a page of them."""
    found: list[StoredEntry] = []
    scanned, last, exhausted = 0, None, False
    while scanned < limit and len(found) < PAGE:
        count = min(_CHUNK, limit - scanned)
        entries = await reader.read(count=count, newest_first=newest_first, **bounds)
        for entry in entries:
            scanned += 1
            last = entry
            if test(entry):
                found.append(entry)
                if len(found) == PAGE:
                    break
        if len(entries) < count:
            exhausted = last is None or last is entries[-1]
            break
        bounds = {("before" if newest_first else "after"): entries[-1].id}
    reached = None if last is None else datetime.fromtimestamp(last.time_ms / 1000, UTC) if last.time_ms else None
    further = None if exhausted or last is None else last.id
    page.scan = Scan(scanned, len(found), reached, further, "older" if newest_first else "newer")
    return found


async def _around(reader: _Reader, at_ms: int) -> tuple[list[StoredEntry], list[StoredEntry]]:
    half = PAGE // 2
    newer = await reader.read(count=half, from_ms=at_ms)
    older = await reader.read(count=PAGE - half, newest_first=True, to_ms=at_ms)
    return list(reversed(newer)), older


async def _find(reader: _Reader, event_id: str, page: Page, limit: int) -> StoredEntry | None:
    """The stored entry of ``event_id``: near its journey's stored step when there is one, else by
    scanning back from the newest (bounded, and reported like a filtered search)."""
    steps, _, _ = read_steps(event_id)
    for step in steps:
        if step["step"] == "stored" and step.get("topic") == reader.topic:
            entry = await find_around(reader, reader.topic, event_id, step["at"], limit=limit)
            if entry is not None:
                return entry
    needle = b'"id":' + orjson.dumps(event_id)

    def test(entry: StoredEntry) -> bool:
        return needle in entry.event and (_attributes(entry) or {}).get("id") == event_id

    found = await _scan(reader, test, page, newest_first=True, limit=limit)
    return found[0] if found else None


def browse(topic: Topic, cleaned: Mapping[str, Any], *, payload_visible: bool) -> Page:
    """One page of ``topic``'s events for the search ``cleaned`` (an ``EventSearchForm``'s)."""
    limit = settings.MESH_EVENT_SCAN_LIMIT
    test = matcher(cleaned)
    page = Page()

    async def run(store: Store) -> list[StoredEntry]:
        reader = _Reader(store, topic.name)
        try:
            return await _page(reader, cleaned, test, page, limit)
        finally:
            page.reads = reader.reads

    entries = eventstore.with_store(topic, run)
    page.rows = [Row(event) for event in (event_context(e, payload_visible) for e in entries)]
    for row in page.rows:
        row.is_target = page.target is not None and row.event.get("id") == page.target
    return page


async def _page(reader: _Reader, cleaned, test, page: Page, limit: int) -> list[StoredEntry]:
    before, after, at, event_id = (cleaned.get(k) for k in ("before", "after", "at", "id"))
    if event_id:
        page.target = event_id
        entry = await _find(reader, event_id, page, limit)
        if entry is None:
            return []
        page.found = True
        page.scan = None
        half = PAGE // 2
        newer = await reader.read(count=half, after=entry.id)
        older = await reader.read(count=PAGE - half - 1, newest_first=True, before=entry.id)
        rows = [*reversed(newer), entry, *older]
        page.newer = newer[-1].id if len(newer) == half else None
        page.older = older[-1].id if len(older) == PAGE - half - 1 else None
        return rows
    if at is not None:
        page.at = at
        at_ms = int(at.timestamp() * 1000)
        if test is not None:  # a search back from that time
            return await _scan(reader, test, page, newest_first=True, limit=limit, to_ms=at_ms)
        newer, older = await _around(reader, at_ms)
        page.marker = len(newer)
        page.newer = newer[0].id if len(newer) == PAGE // 2 else None
        page.older = older[-1].id if len(older) == PAGE - PAGE // 2 else None
        return [*newer, *older]
    if after:
        if test is not None:
            return list(reversed(await _scan(reader, test, page, newest_first=False, limit=limit, after=after)))
        rows = list(reversed(await reader.read(count=PAGE, after=after)))
        page.newer = rows[0].id if len(rows) == PAGE else None
        page.older = rows[-1].id if rows else after
        return rows
    if test is not None:
        return await _scan(reader, test, page, newest_first=True, limit=limit, before=before)
    rows = await reader.read(count=PAGE, newest_first=True, before=before)
    page.older = rows[-1].id if len(rows) == PAGE else None
    page.newer = rows[0].id if before and rows else None
    return rows
