"""What one browser sees of a topic's live tap: filtered, paced, masked, and honest about it.

A :class:`Viewer` receives every message of copies the runtimes tap for the topic (from
``tracing.hub``), keeps the copies that match its filters, and sends at most ``rate`` of them a
second; every match it does not send is counted as skipped, every match that arrives while paused
as arrived-while-paused, so that what the page says adds up: shown + skipped + paused = matched.
Copies a runtime could not send (its tap buffer was full) are counted as lost: they reached no
viewer. Pacing is a token bucket of one second's worth, so a burst smaller than the rate is shown
whole and a sustained flood is sampled evenly rather than cut at the start of each second. What
is shown goes out in one message per 50 ms at most, so a busy topic costs each browser 20 frames
a second.

The portal's work follows what is shown, not what is tapped: a viewer without a filter only
counts the copies of a message and decodes the few it shows; a shown copy is decoded, presented
and encoded once per message for every viewer who shows it with the same rights (viewers with
the same rate pick the same copies), and each frame joins those encodings.

What a copy looks like in the browser depends on the user (``tracing.access``): the whole copy
for those who may see payloads, the public attributes and the size of the data for the others.
The same rule decides which attributes a filter may name: a filter on an extension would tell,
by matching or not, what the mask hides.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from meshruntime.cloudevents import data_text, is_json_media_type, member_text, stored_data_text
from meshruntime.filters import FilterError, Matcher, compile_filters, validate_filters
from meshruntime.tapwire import TapMessage

from .access import PUBLIC_ATTRIBUTES, mask

__all__ = ["BadMessage", "TailFilter", "Viewer", "parse_filter", "present", "view"]

#: Longest quick-match text (id, type, source, subject).
MAX_TEXT = 200
#: Fields a copy keeps for those who may see payloads (besides attributes and data).
_WHOLE_FIELDS = ("topic", "outcome", "application", "stream_id", "rule", "reason", "runtime", "at",
                 "data", "data_encoding", "data_size", "data_truncated")
#: Fields about the flow, not the event's content, that everyone sees.
_FLOW_FIELDS = ("topic", "outcome", "application", "stream_id", "reason", "runtime", "at")
_TEXT_ATTRIBUTES = ("id", "type", "source", "subject")


class BadMessage(ValueError):
    """A message from the browser that is not valid; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def reply(self) -> dict[str, str]:
        return {"type": "error", "field": self.field, "message": self.message}


@dataclass(frozen=True)
class TailFilter:
    """CloudEvents Subscriptions filters (``meshruntime.filters``) and a quick text match."""

    filters: tuple = ()
    text: str = ""
    matcher: Matcher | None = None

    def __bool__(self) -> bool:
        return bool(self.filters or self.text)

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        if self.matcher is not None and not self.matcher(attributes):
            return False
        if self.text:
            needle = self.text
            return any(needle in str(attributes.get(name, "")).casefold() for name in _TEXT_ATTRIBUTES)
        return True

    def describe(self) -> dict[str, Any]:
        return {"filters": list(self.filters), "text": self.text}


def _named_attributes(filter_: Any, path: str):
    """``(path, name)`` of every attribute a (valid) filter names."""
    ((dialect, argument),) = filter_.items()
    here = f"{path}.{dialect}"
    if dialect in ("exact", "prefix", "suffix"):
        for name in argument:
            yield f"{here}.{name}", name
    elif dialect in ("all", "any"):
        for index, item in enumerate(argument):
            yield from _named_attributes(item, f"{here}[{index}]")
    else:
        yield from _named_attributes(argument, here)


def parse_filter(message: Mapping[str, Any], *, payload: bool) -> TailFilter:
    """The filter a ``{"type": "filter", "filters": [...], "text": "..."}`` message asks for.

    Raises :class:`BadMessage` naming the path of what is wrong.
    """
    filters = message.get("filters", [])
    text = message.get("text", "")
    try:
        validate_filters(filters, path="filters")
    except FilterError as error:
        raise BadMessage(error.path, error.problem) from None
    if not payload:
        for path, name in (p for index, f in enumerate(filters) for p in _named_attributes(f, f"filters[{index}]")):
            if name not in PUBLIC_ATTRIBUTES:
                raise BadMessage(path, f'you see attributes only on this topic, so filters may name '
                                       f'{", ".join(PUBLIC_ATTRIBUTES)}; not "{name}"')
    if not isinstance(text, str):
        raise BadMessage("text", f"must be a string, got {type(text).__name__}")
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise BadMessage("text", f"must be at most {MAX_TEXT} characters, got {len(text)}")
    matcher = compile_filters(filters) if filters else None
    return TailFilter(tuple(filters), text.casefold() if text else "", matcher)


def view(copy: Mapping[str, Any], raw: bytes | None = None) -> Mapping[str, Any]:
    """A tap copy in the shape the page reads: ``attributes``, ``data``, ``data_encoding``
    (``json``, ``text`` or ``base64``), ``data_size``, and the copy's own fields.

    A runtime sends a stored event as it stored it (``event``: the CloudEvents JSON format), and
    a larger or a refused one already in this shape (``meshruntime.tap.compact``). ``data`` is text
    in every encoding: JSON data is the producer's JSON text, cut from ``raw`` (the copy as the
    runtime wrote it), since the page shows and copies events as they were published and a decoded
    copy has lost the digits of numbers a double cannot hold. The data's size is counted as the
    event browser counts it (``tracing.presenting``): bytes of binary data, UTF-8 bytes of text,
    bytes of the JSON text."""
    event = copy.get("event")
    if not isinstance(event, dict):
        if copy.get("data_encoding") != "json" or "data" not in copy:
            return copy
        return {**copy, "data": _json_text(copy, raw).decode("utf-8", "replace")}
    shown = {name: value for name, value in copy.items() if name != "event"}
    attributes = {name: value for name, value in event.items() if name not in ("data", "data_base64")}
    shown["attributes"] = attributes
    if "data_base64" in event:
        data = event["data_base64"]
        shown["data"] = data
        shown["data_encoding"] = "base64"
        shown["data_size"] = _base64_size(data)
    elif event.get("data") is not None:
        data = event["data"]
        content_type = attributes.get("datacontenttype")
        if isinstance(data, str) and content_type is not None and not is_json_media_type(content_type):
            shown["data"] = data
            shown["data_encoding"] = "text"
            shown["data_size"] = len(data.encode("utf-8", "surrogatepass"))
        else:
            text = _json_text(copy, raw)
            shown["data"] = text.decode("utf-8", "replace")
            shown["data_encoding"] = "json"
            shown["data_size"] = len(text)
    else:
        shown["data_size"] = 0
    return shown


def _json_text(copy: Mapping[str, Any], raw: bytes | None) -> bytes:
    """The text of a copy's JSON data as the producer wrote it: from the stored event a copy
    embeds, or from a compact copy's ``data`` member. Without ``raw`` (a message of an older
    runtime, which came decoded), the value as orjson writes it."""
    event = copy.get("event")
    if raw is None:
        return orjson.dumps(event["data"] if isinstance(event, dict) else copy["data"])
    if isinstance(event, dict):
        return stored_data_text(_embedded_event(raw), event)
    return data_text(raw, copy["data"])


#: How a runtime's copy of a stored event embeds it (``meshruntime.tap.Tap.offer_stored``): last,
#: after members whose strings escape their quotes, so that the key first occurs as that member.
_EVENT_KEY = b',"event":'


def _embedded_event(raw: bytes) -> bytes:
    """The stored event in the copy ``raw``, byte for byte."""
    start = raw.find(_EVENT_KEY)
    if start < 0:  # not written by a runtime
        return member_text(raw, "event")
    return raw[start + len(_EVENT_KEY):raw.rindex(b"}")]


def _base64_size(data: Any) -> int:
    if not isinstance(data, str):
        return 0
    stripped = data.rstrip("=")
    return len(stripped) * 3 // 4


def present(copy: Mapping[str, Any], *, payload: bool) -> dict[str, Any]:
    """A tap copy (:func:`view`'s shape) as ``payload`` allows the viewer to see it."""
    attributes = copy.get("attributes") or {}
    if payload:
        shown = {name: copy[name] for name in _WHOLE_FIELDS if name in copy}
        shown["attributes"] = attributes
        return shown
    public = mask(attributes, copy.get("data_size"))
    shown = {name: copy[name] for name in _FLOW_FIELDS if name in copy}
    shown["data_size"] = public.pop("data_size")
    shown["attributes"] = public
    shown["masked"] = True
    return shown


def _attributes(message: TapMessage, index: int) -> Mapping[str, Any]:
    """The attributes of copy ``index`` (filters match on these), decoded once per message."""
    key = ("view", index)
    found = message.memo.get(key)
    if found is None:
        found = message.memo[key] = view(message.item(index), message.raw(index))
    return found.get("attributes") or {}


def _shown(message: TapMessage, index: int, payload: bool) -> orjson.Fragment:
    """Copy ``index`` as a viewer with (or without) ``payload`` rights gets it, encoded: once per
    message for every viewer who shows it."""
    key = (payload, index)
    found = message.memo.get(key)
    if found is None:
        copy = message.memo.get(("view", index))
        if copy is None:
            copy = message.memo["view", index] = view(message.item(index), message.raw(index))
        found = message.memo[key] = orjson.Fragment(orjson.dumps(present(copy, payload=payload)))
    return found


class _Bucket:
    """``rate`` tokens a second, at most one second's worth saved up."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.at = time.monotonic()

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` tokens; how many were taken."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        taken = min(wanted, int(self.tokens))
        self.tokens -= taken
        return taken


@dataclass
class Counts:
    received: int = 0  #: copies of the topic's events that reached this viewer
    matched: int = 0  #: of those, matching the viewer's filter
    shown: int = 0  #: sent to the browser
    skipped: int = 0  #: matched, not sent: over the rate
    paused: int = 0  #: matched while paused (since the last pause)
    lost: int = 0  #: copies the runtimes could not send (their tap buffer was full): seen by nobody

    def as_dict(self) -> dict[str, int]:
        return {"received": self.received, "matched": self.matched, "shown": self.shown,
                "skipped": self.skipped, "paused": self.paused, "lost": self.lost}


class Viewer:
    """One browser's tail. :meth:`offer` is the hub's sink; :meth:`run` sends (one task)."""

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]], *, payload: bool, rate: int,
                 max_rate: int, tick: float = 1.0, batch: float = 0.05) -> None:
        self._send = send
        self.payload = payload
        self.max_rate = max_rate
        self.rate = rate
        self.filter = TailFilter()
        self.paused = False
        self.counts = Counts()
        self._bucket = _Bucket(rate)
        self._pending: list[orjson.Fragment] = []  # encoded copies to send
        self._outbox: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._ticked = False
        self._ticker: asyncio.TimerHandle | None = None
        self._tick = tick
        self._batch = batch
        self._last_totals = self.counts.as_dict()
        self._last_stats: dict[str, Any] | None = None

    # -- from the hub ---------------------------------------------------------------------------
    def offer(self, message: TapMessage) -> None:
        counts = self.counts
        received = len(message)
        counts.received += received
        counts.lost += message.dropped
        tail_filter = self.filter
        if tail_filter:
            indices = [i for i in range(received) if tail_filter.matches(_attributes(message, i))]
            matched = len(indices)
        else:
            indices = None  # every one: nothing decoded to count them
            matched = received
        if not matched:
            return
        counts.matched += matched
        if self.paused:
            counts.paused += matched
            return
        shown = self._bucket.take(matched)
        counts.shown += shown
        counts.skipped += matched - shown
        if shown:  # spread over what came rather than the first few of it
            payload = self.payload
            picks = (k * matched // shown for k in range(shown))
            self._pending.extend(_shown(message, i if indices is None else indices[i], payload) for i in picks)
            self._wake.set()

    # -- from the browser -----------------------------------------------------------------------
    def handle(self, message: Any) -> dict[str, Any]:
        """Apply one browser message; return the reply. Raises :class:`BadMessage`."""
        if not isinstance(message, dict):
            raise BadMessage("message", "must be a JSON object with a type")
        kind = message.get("type")
        allowed = {"filter": {"type", "filters", "text"}, "pause": {"type"}, "resume": {"type"},
                   "rate": {"type", "value"}}
        if kind not in allowed:
            raise BadMessage("type", f"must be one of {', '.join(allowed)}; got {kind!r}")
        unknown = sorted(set(message) - allowed[kind])
        if unknown:
            raise BadMessage(unknown[0], f"is not a field of a {kind} message")
        if kind == "filter":
            self.filter = parse_filter(message, payload=self.payload)
            return {"type": "filter", **self.filter.describe()}
        if kind == "pause":
            self.paused = True
            self.counts.paused = 0
            return {"type": "paused"}
        if kind == "resume":
            arrived, self.paused, self.counts.paused = self.counts.paused, False, 0
            return {"type": "resumed", "arrived": arrived}
        value = message.get("value")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= self.max_rate:
            raise BadMessage("value", f"must be a whole number of events a second from 1 to {self.max_rate}; "
                                      f"got {value!r}")
        self.rate = value
        self._bucket = _Bucket(value)
        return {"type": "rate", "value": value}

    def set_payload(self, payload: bool) -> None:
        """Rights changed: mask (or unmask) from the next copy on; a filter naming what the mask
        hides is dropped, with an error saying why."""
        if payload == self.payload:
            return
        self.payload = payload
        if not payload and self.filter:
            try:
                parse_filter(self.filter.describe(), payload=False)
            except BadMessage as error:
                self.filter = TailFilter()
                self.say({**error.reply(), "message": error.message + "; the filter was removed"})

    def say(self, message: dict[str, Any]) -> None:
        """Queue a message for the browser, sent in order with the events."""
        self._outbox.append(message)
        self._wake.set()

    # -- to the browser -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any] | None:
        """The counts of the last tick and in all; None when it would repeat the last one sent."""
        now = self.counts.as_dict()
        last, self._last_totals = self._last_totals, now
        per_interval = {name: now[name] - last[name] for name in ("received", "matched", "shown", "skipped", "lost")}
        message = {"type": "stats", "interval": self._tick, "per_interval": per_interval, "totals": now,
                   "paused": self.paused, "rate": self.rate}
        if message == self._last_stats or (self._last_stats is None and not any(now.values()) and not self.paused):
            return None  # the same again, or nothing yet
        self._last_stats = message
        return message

    async def flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        for message in outbox:
            await self._send(message)
        if self._pending:
            events, self._pending = self._pending, []
            await self._send({"type": "events", "events": events})

    async def run(self) -> None:
        """Send queued events as they come, at most one message per ``batch`` seconds, and the
        counts once a tick, until cancelled (or the socket is gone: the consumer's disconnect then
        stops the rest).

        Messages go out on a grid of ``batch`` seconds of the loop's clock, the counts on a grid
        of ``tick`` seconds, the same for every viewer of the process: a busy portal wakes once per
        ``batch`` for all of its viewers rather than once per viewer at times of their own."""
        loop = asyncio.get_running_loop()
        self._ticker = loop.call_at(_next_slot(loop.time(), self._tick), self._tick_due)
        try:
            while True:
                await self._wake.wait()
                await _sleep_until(loop, _next_slot(loop.time(), self._batch))  # what comes meanwhile joins
                self._wake.clear()
                await self.flush()
                if self._ticked:
                    self._ticked = False
                    stats = self.stats()
                    if stats is not None:
                        await self._send(stats)
        finally:
            self._ticker.cancel()

    def _tick_due(self) -> None:
        self._ticked = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        self._ticker = loop.call_at(_next_slot(loop.time(), self._tick), self._tick_due)


def _next_slot(now: float, period: float) -> float:
    """The first multiple of ``period`` after ``now``."""
    return (math.floor(now / period) + 1) * period


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """``asyncio.sleep`` to a time rather than for a delay: viewers that wait for the same slot
    wake in the same turn of the loop."""
    future = loop.create_future()
    handle = loop.call_at(when, _set_done, future)
    try:
        await future
    finally:
        handle.cancel()


def _set_done(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
