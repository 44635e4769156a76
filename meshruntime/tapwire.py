"""How tap messages travel from a runtime to the portal (a pure module: both sides use it).

A runtime sends, per channel and per flush of its tap (``meshruntime.tap``), one message::

    {"format": 2, "sizes": [412, 398, ...], "dropped": 0}\\n<copy 1><copy 2>...

a header line, then the copies (JSON objects) back to back, copy *i* being ``sizes[i]`` bytes
long. ``dropped`` counts the copies for the channel that the runtime could not send since its
last message (its tap buffer was full, or Redis refused a send): the portal tells viewers about
them rather than pretending the topic was quieter.

The sizes let a reader count the copies and cut out the few it will show without parsing the
others: a viewer shown 50 events a second of a topic that runs at thousands costs the portal 50
decodes a second, not thousands. (A copy cannot be found by a separator: an event's data is the
producer's own JSON text, newlines and all.)

Runtimes older than this format sent one JSON array of copies per message; :func:`decode`
reads both, so that the portal can be upgraded first (docs/operations.md, "Upgrades").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Any

import orjson

from .cloudevents import loads

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "TapMessage", "TapMessageError", "decode", "encode"]

FORMAT = 2


class TapMessageError(ValueError):
    """A tap message that is not in either format."""


def encode(copies: Sequence[bytes], dropped: int = 0, *, max_bytes: int = 1 << 20) -> Iterator[bytes]:
    """``copies`` (each one JSON object) as messages of at most about ``max_bytes`` each (a copy
    larger than that travels alone); ``dropped`` goes in the first. No copies and nothing
    dropped: no message."""
    start = 0
    n = len(copies)
    while start < n or dropped:
        end = start
        size = 0
        while end < n and (end == start or size + len(copies[end]) <= max_bytes):
            size += len(copies[end])
            end += 1
        part = copies[start:end]
        header = orjson.dumps({"format": FORMAT, "sizes": [len(c) for c in part], "dropped": dropped})
        yield header + b"\n" + b"".join(part)
        start, dropped = end, 0


class TapMessage:
    """The copies of one message, decoded one by one as they are asked for (and once only).

    ``memo`` is for readers that derive something from a copy and share it (the portal presents
    a shown copy once for all its viewers)."""

    __slots__ = ("_data", "_ends", "_items", "decoded", "dropped", "memo")

    def __init__(self, data: bytes, ends: list[int], dropped: int, items: list[Any] | None = None) -> None:
        self._data = data
        self._ends = ends  # where each copy ends in data (its start: the previous end)
        self._items: list[Any] = items if items is not None else [None] * (len(ends) - 1)
        self.dropped = dropped
        #: copies decoded so far
        self.decoded = len(self._items) if items is not None else 0
        self.memo: dict[Any, Any] = {}

    @classmethod
    def of(cls, items: list[Any], dropped: int = 0) -> TapMessage:
        """A message of copies already decoded (the older format, tests)."""
        return cls(b"", [0] * (len(items) + 1), dropped, items)

    def __len__(self) -> int:
        return len(self._items)

    def item(self, index: int) -> Any:
        """Copy ``index``, decoded (an unreadable copy is an empty object, logged)."""
        found = self._items[index]
        if found is None:
            raw = memoryview(self._data)[self._ends[index]:self._ends[index + 1]]
            try:
                found = loads(raw)  # a number beyond a double's range (1e400) too
            except orjson.JSONDecodeError:
                log.warning("tap: copy %d of a message is not JSON; shown empty", index)
                found = {}
            self._items[index] = found
            self.decoded += 1
        return found

    def raw(self, index: int) -> bytes | None:
        """Copy ``index`` as the runtime wrote it; None for a message that came decoded (the older
        format). A reader that shows a copy's data takes its text from here: decoding rounds the
        numbers a double cannot hold."""
        if not self._data:
            return None
        return self._data[self._ends[index]:self._ends[index + 1]]

    def items(self) -> list[Any]:
        """Every copy, decoded."""
        return [self.item(i) for i in range(len(self))]


def decode(data: bytes) -> TapMessage:
    """A message in either format; raises :class:`TapMessageError` saying what is wrong."""
    if data[:1] == b"[":  # a runtime before the framed format: one JSON array
        try:
            items = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise TapMessageError(f"not JSON: {error}") from None
        return TapMessage.of(items)
    end = data.find(b"\n")
    if end < 0:
        raise TapMessageError("no header line")
    try:
        header = orjson.loads(data[:end])
    except orjson.JSONDecodeError as error:
        raise TapMessageError(f"the header is not JSON: {error}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise TapMessageError(f"the header is not a format {FORMAT} header")
    sizes, dropped = header.get("sizes"), header.get("dropped", 0)
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s > 0 for s in sizes) \
            or not isinstance(dropped, int) or dropped < 0:
        raise TapMessageError("the header's sizes or dropped count are not counts")
    ends = list(accumulate(sizes, initial=end + 1))
    if ends[-1] != len(data):
        raise TapMessageError(f"the sizes add up to {ends[-1] - end - 1} bytes of copies, the message has "
                              f"{len(data) - end - 1}")
    return TapMessage(data, ends, dropped)
