"""CloudEvents 1.0 over HTTP: parse the three modes, check events, serialize them back.

Pure (no I/O, no runtime state), so that the publish path, the delivery path (webhook push in
structured or binary mode) and the portal all read and write events the same way.

- Structured mode: the body is one event in the JSON format (``application/cloudevents+json``).
- Binary mode: context attributes in ``ce-*`` headers (percent-encoded), ``Content-Type`` is
  ``datacontenttype``, the body is the data, byte for byte.
- Batch mode: a JSON array of structured events (``application/cloudevents-batch+json``).

An event is stored in the structured JSON format, its data last; data that arrived as bytes of a
non-JSON, non-text media type is kept as ``data_base64``. JSON data is kept as the producer wrote
it: the bytes of a binary-mode body, the text of the ``data`` member of a structured event
(whitespace, escapes and every digit of its numbers), embedded verbatim in the stored JSON, so
that what a subscriber receives is what the producer sent. Numbers are never rounded: a parsed
copy (for a topic's schema) holds integers exactly and, where a double could not, decimals as
:class:`~decimal.Decimal`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote

import orjson

__all__ = [
    "BATCH_CONTENT_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEvent",
    "EventError",
    "binary_from_stored",
    "data_text",
    "exact_value",
    "is_event_format",
    "is_json_media_type",
    "loads",
    "loads_exact",
    "member_text",
    "parse_batch",
    "parse_binary",
    "parse_http",
    "parse_structured",
    "reread",
    "stored_data_text",
]

SPECVERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"

REQUIRED = ("id", "source", "specversion", "type")
# Context attributes the spec defines; anything else is an extension.
CORE_ATTRIBUTES = frozenset({*REQUIRED, "datacontenttype", "dataschema", "subject", "time"})
_DATA_KEYS = frozenset({"data", "data_base64"})

_EXTENSION_NAME = re.compile(r"[a-z0-9]+")
# RFC 3339 date-time (the ``time`` attribute).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})"
)
# Values in ce-* headers: printable ASCII except space, '"' and '%' travels as is (HTTP binding 3.1.3.2).
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
# A value made only of those characters is its own percent-encoding: nearly every attribute is one,
# and matching is several times cheaper than encoding.
_ENCODED_AS_IS = re.compile(r"[!#$&-~]*")
# JSON values of extensions: the CloudEvents type system has no floats, objects or arrays.
_EXTENSION_TYPES = (str, bool, int)
_INT32 = (-(2**31), 2**31 - 1)

# Numbers a double may not hold exactly: 16 or more digits (and points) in a row, or an exponent of
# three digits. Strings can match too (a card number): that only costs an exact parse.
_MAYBE_INEXACT = re.compile(rb"[0-9.]{16,}|[eE][-+]?[0-9]{3}")
_NUMBER_CHARS = frozenset(b"0123456789.eE+-")
_WHITESPACE = b" \t\n\r"
_WS = re.compile(r"[ \t\n\r]*")
_DATA_KEY = b',"data":'
# the key with whitespace before its colon: never inside a string, whose quotes are escaped
_DATA_KEY_SPACED = re.compile(rb'"data"[ \t\n\r]*:[ \t\n\r]*')


class EventError(ValueError):
    """An event (or a request) that is not a valid CloudEvent; the message names the attribute."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        self.index = index
        super().__init__(f"event [{index}]: {message}" if index is not None else message)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


# Every number exact: integers as int (Python's are unbounded), the others as Decimal.
_EXACT = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constant)


def loads_exact(text: bytes | str) -> Any:
    """The JSON value of ``text`` with every number exact (integers as ``int``, others as
    ``Decimal``); raises ``ValueError``. For checks that must see the digits the producer wrote."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8")
    return _EXACT.decode(text)


def loads(text: bytes | str) -> Any:
    """``orjson.loads``, which reads numbers as 64-bit integers or doubles, and refuses one beyond a
    double's range (``1e400``): that JSON is read exactly instead (:func:`loads_exact`), so that
    what is valid JSON is accepted whatever its numbers. Raises ``orjson.JSONDecodeError``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return reread(text, error)


def reread(text: bytes | str, error: orjson.JSONDecodeError) -> Any:
    """What :func:`loads` does once ``orjson.loads(text)`` raised ``error`` (the hot paths call
    orjson themselves, then this): the exact value of JSON that only a number's range stopped, else
    ``error`` raised again."""
    if not str(error).startswith("number is infinity"):
        raise error
    try:
        return loads_exact(text)
    except ValueError:
        raise error from None


def exact_value(text: bytes) -> Any:
    """The JSON value of ``text`` (valid JSON), its numbers exact where a double may not hold them."""
    if _MAYBE_INEXACT.search(text) is not None:
        return loads_exact(text)
    return orjson.loads(text)


def is_event_format(content_type: str | None) -> bool:
    """A CloudEvents format (``application/cloudevents+json``, ``…-batch+json``, ``+avro``, …):
    as a request's ``Content-Type``, it tells a receiver that the body is a whole event (structured
    mode), whatever ``ce-*`` headers say (HTTP binding, 3.1 and 3.2)."""
    # "application/json…" (most events) is told apart by its length or its 13th character
    return (content_type is not None and len(content_type) >= 23 and content_type[12] in "cC"
            and content_type[:23].lower() == "application/cloudevents")


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json``, ``text/json`` and any ``+json`` type, with or without parameters."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def _is_text_media_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in ("application/xml", "application/x-www-form-urlencoded") \
        or media.endswith("+xml")


class CloudEvent:
    """One event: its context attributes (extensions included) and its data.

    ``data`` is None (no data), a JSON value, a ``str`` (text data) or ``bytes`` (binary data).
    ``raw_json`` holds the exact JSON text of JSON data that arrived as text (a binary-mode body,
    a structured event's ``data`` member), so that serializing neither changes what the producer
    wrote nor writes it again. Treat instances as immutable: :meth:`with_extension` returns a copy.
    """

    __slots__ = ("attributes", "data", "raw_json")

    def __init__(self, attributes: dict[str, Any], data: Any = None, raw_json: bytes | None = None) -> None:
        self.attributes = attributes
        self.data = data
        self.raw_json = raw_json

    # -- reading --------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.attributes["id"]

    @property
    def type(self) -> str:
        return self.attributes["type"]

    @property
    def source(self) -> str:
        return self.attributes["source"]

    def get(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)

    @property
    def extensions(self) -> dict[str, Any]:
        return {k: v for k, v in self.attributes.items() if k not in CORE_ATTRIBUTES}

    def json_data(self) -> tuple[bool, Any]:
        """``(True, value)`` when the data is a JSON document, else ``(False, None)``.

        JSON data is data with a JSON media type (or none, in the JSON format), and binary
        data that parses as JSON: what a topic's schema can be checked against. Numbers a double
        may not hold are exact in ``value`` (``int``, ``Decimal``), read from the producer's text.
        """
        data = self.data
        if data is None:
            return False, None
        if self.raw_json is not None:
            if _MAYBE_INEXACT.search(self.raw_json) is not None:
                return True, loads_exact(self.raw_json)
            return True, data
        if isinstance(data, bytes):
            try:
                return True, exact_value(data)
            except ValueError:
                return False, None
        if isinstance(data, str) and not self._data_is_json():
            try:
                return True, exact_value(data.encode("utf-8"))
            except ValueError:
                return False, None
        return True, data

    def _data_is_json(self) -> bool:
        content_type = self.attributes.get("datacontenttype")
        return content_type is None or is_json_media_type(content_type)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CloudEvent):
            return NotImplemented
        return self.attributes == other.attributes and self.data == other.data

    def __repr__(self) -> str:
        return f"CloudEvent({self.attributes!r}, data={self.data!r})"

    # -- changing -------------------------------------------------------------------------------
    def with_extension(self, name: str, value: Any) -> CloudEvent:
        """A copy with one more (or a replaced) extension attribute; data is shared."""
        return CloudEvent({**self.attributes, name: value}, self.data, self.raw_json)

    # -- writing --------------------------------------------------------------------------------
    def to_structured_dict(self) -> dict[str, Any]:
        """The JSON-format object (data as a JSON value, text, or ``data_base64``)."""
        out = dict(self.attributes)
        data = self.data
        if data is None:
            return out
        if isinstance(data, bytes):
            out["data_base64"] = base64.b64encode(data).decode("ascii")
        elif self.raw_json is not None:
            out["data"] = orjson.Fragment(self.raw_json)
        else:
            out["data"] = data
        return out

    def to_structured(self) -> bytes:
        """The event in the JSON format, as stored and as sent in structured mode."""
        return orjson.dumps(self.to_structured_dict())

    def to_binary(self) -> tuple[dict[str, str], bytes]:
        """Headers and body for HTTP binary mode (the webhook push of a ``binary`` subscription)."""
        headers: dict[str, str] = {}
        for name, value in self.attributes.items():
            if name != "datacontenttype":
                headers[f"ce-{name}"] = _header_value(value)
        body, content_type = _binary_body(self.data, self.raw_json, self.attributes.get("datacontenttype"))
        if content_type is not None:
            headers["content-type"] = content_type
        return headers, body

    # -- reading from the wire -----------------------------------------------------------------
    @classmethod
    def from_structured(cls, obj: dict[str, Any] | bytes | str, *, index: int | None = None) -> CloudEvent:
        """An event from its JSON-format object (or the JSON text of one, whose data is then kept
        as written); checked. The caller's dict is left as it was."""
        if isinstance(obj, bytes | str):
            text = obj.encode("utf-8") if isinstance(obj, str) else obj
            try:
                parsed = loads(text)
            except orjson.JSONDecodeError as error:
                raise EventError(f"not valid JSON: {error}", index=index) from None
            return cls._from_text(parsed, text, index)
        if isinstance(obj, dict):
            obj = dict(obj)
        return cls._from_parsed(obj, index)

    @classmethod
    def _from_text(cls, obj: Any, text: bytes, index: int | None = None) -> CloudEvent:
        """:meth:`_from_parsed` for ``obj`` parsed from ``text``, keeping the text of its data."""
        event = cls._from_parsed(obj, index)
        data = event.data
        if data is not None and data.__class__ is not bytes and (data.__class__ is not str or event._data_is_json()):
            event.raw_json = data_text(text, data)
        return event

    @classmethod
    def _from_parsed(cls, obj: Any, index: int | None = None) -> CloudEvent:
        """:meth:`from_structured` for an object fresh from the parser, which becomes the
        attribute dict itself: copying every attribute of every event is measurable."""
        if not isinstance(obj, dict):
            raise EventError(f"an event must be a JSON object, got {type(obj).__name__}", index=index)
        attributes: dict[str, Any] = obj
        data = attributes.pop("data", None)
        encoded = attributes.pop("data_base64", None)
        if encoded is not None:
            if data is not None:
                raise EventError("an event has either data or data_base64, not both", index=index)
            if not isinstance(encoded, str):
                raise EventError("data_base64 must be a string", index=index)
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise EventError("data_base64 is not valid base64", index=index) from None
        if None in attributes.values():  # the JSON format treats null as absent
            attributes = {name: value for name, value in attributes.items() if value is not None}
        check_attributes(attributes, index=index)
        return cls(attributes, data)


def binary_from_stored(stored: bytes, attributes: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """Headers and body for HTTP binary mode of an event as the store keeps it: its JSON (``stored``)
    and that JSON parsed (``attributes``). What ``CloudEvent.from_structured(stored).to_binary()``
    makes of it, without building an event nor checking it again (it was checked when it was
    published); JSON data is the stored text itself (:func:`stored_data_text`), never written
    again. The delivery engine calls it for every push of a binary subscription."""
    headers: dict[str, str] = {}
    content_type = data = encoded = None
    for name, value in attributes.items():
        if name == "data":
            data = value
        elif name == "data_base64":
            encoded = value
        elif name == "datacontenttype":
            content_type = value
        elif value.__class__ is str and _ENCODED_AS_IS.fullmatch(value):
            headers[f"ce-{name}"] = value
        elif value is not None:  # the JSON format's null is an absent attribute
            headers[f"ce-{name}"] = _header_value(value)
    if encoded is not None:
        body = base64.b64decode(encoded)
    elif data is None:
        body = b""
    elif data.__class__ is str and not (content_type is None or is_json_media_type(content_type)):
        body = data.encode("utf-8")
    else:
        body = stored_data_text(stored, attributes)
        if content_type is None:
            content_type = "application/json"
    if content_type is not None:
        headers["content-type"] = content_type
    return headers, body


def stored_data_text(stored: bytes, attributes: Mapping[str, Any]) -> bytes:
    """The text of the ``data`` member of a stored event (``attributes`` is ``stored`` parsed).

    The runtime stores events as :meth:`CloudEvent.to_structured` writes them: compact JSON, its
    attributes (strings, integers, booleans) first and ``data`` last, and a routed copy has
    ``,"meshroute":"<rule>"`` after it. So ``,"data":`` first occurs as that member (a string
    cannot hold it: its quotes are escaped), and the data ends before the final ``}`` or before
    the copy's ``meshroute`` member (which no JSON value can end with).
    """
    start = stored.find(_DATA_KEY)
    if start < 0:  # not written by the runtime
        return data_text(stored, attributes["data"])
    end = len(stored) - 1
    route = attributes.get("meshroute")
    if route is not None:
        suffix = b',"meshroute":' + orjson.dumps(route) + b"}"
        if stored.endswith(suffix):
            end = len(stored) - len(suffix)
    return stored[start + len(_DATA_KEY):end]


def data_text(text: bytes, data: Any) -> bytes:
    """The exact text of the top-level ``data`` member of the JSON object ``text`` (whose ``data``
    parses to ``data``).

    Producers mostly write compact JSON with ``data`` last; those cases cost a comparison. Others
    cost a search and a parse of the data's text, and anything else is read by the standard
    library's scanner, exactly.
    """
    try:
        canonical = orjson.dumps(data)
    except TypeError:  # a Decimal: orjson cannot write it, so the text is needed anyway
        canonical = None
    else:
        # Compact JSON ending with the canonical data (most producers): nothing but the top-level
        # member can end so (a string cannot hold ',"', and a value cannot contain itself).
        if text.endswith(_DATA_KEY + canonical + b"}"):
            return canonical
    # The first '"data":' is the top-level key: the members before it are strings, numbers and
    # booleans, and a string cannot hold it (its inner quotes are escaped).
    start = text.find(b'"data":')
    if start >= 0:
        start += 7
        while text[start] in _WHITESPACE:
            start += 1
    else:
        match = _DATA_KEY_SPACED.search(text)
        start = match.end() if match is not None else -1
    if start >= 0:
        # the data as orjson writes it, anywhere in the object (a number must also end where the
        # canonical one does: 1.5 is a prefix of 1.50)
        if canonical is not None and text.startswith(canonical, start):
            after = start + len(canonical)
            if after == len(text) or text[after] not in _NUMBER_CHARS:
                return canonical
        # data last: the text up to the final brace is one JSON value only if nothing follows data
        # (and only if this was the top-level key: from a nested one, the brackets do not balance)
        candidate = text[start:text.rindex(b"}")].rstrip(_WHITESPACE)
        try:
            orjson.loads(candidate)
        except orjson.JSONDecodeError as error:
            with contextlib.suppress(orjson.JSONDecodeError):
                reread(candidate, error)
                return candidate
        else:
            return candidate
    found = member_text(text, "data")
    return found if found is not None else orjson.dumps(data)  # not an object with data: no text to keep


def member_text(text: bytes, key: str) -> bytes | None:
    """The text of member ``key`` of the JSON object ``text`` (valid JSON), the last one if the key
    repeats (as parsers read it); None when it has none."""
    s = text.decode("utf-8")
    at = _WS.match(s).end() + 1  # after "{"
    found = None
    while True:
        at = _WS.match(s, at).end()
        if s[at] == "}":
            break
        name, at = json.decoder.scanstring(s, at + 1)
        at = _WS.match(s, _WS.match(s, at).end() + 1).end()  # past ":"
        _value, end = _EXACT.scan_once(s, at)
        if name == key:
            found = (at, end)
        at = _WS.match(s, end).end()
        if s[at] == ",":
            at += 1
    return None if found is None else s[found[0]:found[1]].encode("utf-8")


def _elements(text: bytes) -> list[bytes]:
    """The text of each element of the JSON array ``text`` (valid JSON)."""
    s = text.decode("utf-8")
    at = _WS.match(s).end() + 1  # after "["
    out = []
    while True:
        at = _WS.match(s, at).end()
        if s[at] == "]":
            return out
        _value, end = _EXACT.scan_once(s, at)
        out.append(s[at:end].encode("utf-8"))
        at = _WS.match(s, end).end()
        if s[at] == ",":
            at += 1


def _header_value(value: Any) -> str:
    """An attribute's value as a ``ce-*`` header: its canonical string, percent-encoded."""
    if value.__class__ is str:
        if _ENCODED_AS_IS.fullmatch(value):
            return value
        text = value
    else:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return quote(text, safe=_HEADER_SAFE)


def _binary_body(data: Any, raw_json: bytes | None, content_type: str | None) -> tuple[bytes, str | None]:
    """Binary mode's body, and its ``Content-Type`` (JSON data without one is ``application/json``)."""
    if data is None:
        return b"", content_type
    if isinstance(data, bytes):
        return data, content_type
    if isinstance(data, str) and not (content_type is None or is_json_media_type(content_type)):
        return data.encode("utf-8"), content_type
    if raw_json is not None:
        return raw_json, content_type or "application/json"
    return orjson.dumps(data), content_type or "application/json"


# Extension names already checked: most producers send the same few on every event.
_KNOWN_EXTENSIONS: set[str] = set()
_KNOWN_EXTENSIONS_MAX = 1024


def check_attributes(attributes: Mapping[str, Any], *, index: int | None = None) -> None:
    """Raise :class:`EventError` naming the first attribute that CloudEvents 1.0 does not allow."""
    for name in REQUIRED:
        value = attributes.get(name)
        if value.__class__ is not str or not value:
            if value is None:
                raise EventError(f"required attribute {name!r} is missing", index=index)
            raise EventError(f"attribute {name!r} must be a non-empty string", index=index)
    if attributes["specversion"] != SPECVERSION:
        raise EventError(
            f"specversion {attributes['specversion']!r} is not supported (expected {SPECVERSION!r})",
            index=index,
        )
    for name, value in attributes.items():
        if name in REQUIRED:
            continue
        if name in CORE_ATTRIBUTES:
            if value.__class__ is not str:
                raise EventError(f"attribute {name!r} must be a string", index=index)
            if name == "time" and not _RFC3339.fullmatch(value):
                raise EventError(f"attribute 'time' must be an RFC 3339 timestamp, got {value!r}",
                                 index=index)
            if name == "dataschema" and not value:
                raise EventError("attribute 'dataschema' must be a non-empty URI", index=index)
            continue
        if name not in _KNOWN_EXTENSIONS:
            if not _EXTENSION_NAME.fullmatch(name):
                raise EventError(
                    f"extension attribute name {name!r} must be lowercase ASCII letters and digits", index=index
                )
            if len(_KNOWN_EXTENSIONS) < _KNOWN_EXTENSIONS_MAX:
                _KNOWN_EXTENSIONS.add(name)
        if value.__class__ is str:
            continue
        if isinstance(value, float | Decimal):  # 1.5, or an integer beyond 64 bits as orjson reads it
            raise EventError(
                f"extension attribute {name!r} must be a string, an integer or a boolean; {value} is a number "
                "with a fraction or beyond the 32-bit integer range",
                index=index,
            )
        if not isinstance(value, _EXTENSION_TYPES):
            raise EventError(
                f"extension attribute {name!r} must be a string, an integer or a boolean, "
                f"got {type(value).__name__}",
                index=index,
            )
        if type(value) is int and not _INT32[0] <= value <= _INT32[1]:
            raise EventError(f"extension attribute {name!r} is outside the 32-bit integer range", index=index)


# --------------------------------------------------------------------------------------------
# HTTP modes


def _reread_or_refuse(body: bytes, error: orjson.JSONDecodeError, what: str) -> Any:
    try:
        return reread(body, error)
    except orjson.JSONDecodeError as refused:
        raise EventError(f"{what}: {refused}") from None


def parse_structured(body: bytes) -> CloudEvent:
    """One event from a structured-mode body; its JSON data is kept as written."""
    if not body:
        raise EventError("the request body is empty; a structured-mode event is a JSON object")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        obj = _reread_or_refuse(body, error, "not valid JSON")
    return CloudEvent._from_text(obj, body)


def parse_batch(body: bytes) -> list[CloudEvent]:
    """The events of a batch-mode body (a JSON array of structured events); their JSON data is
    kept as written."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        items = _reread_or_refuse(body, error, "the batch is not valid JSON")
    if not isinstance(items, list):
        raise EventError(f"a batch must be a JSON array of events, got {type(items).__name__}")
    try:  # compact JSON as orjson writes it (most producers' batches): the data is written back the same
        canonical = orjson.dumps(items) == body
    except TypeError:
        canonical = False
    if canonical:
        return [CloudEvent._from_parsed(item, i) for i, item in enumerate(items)]
    return [CloudEvent._from_text(item, text, i) for i, (item, text) in enumerate(zip(items, _elements(body),
                                                                                          strict=True))]


def parse_binary(headers: Iterable[tuple[str, str]], body: bytes, content_type: str | None) -> CloudEvent:
    """One event from binary mode: ``ce-*`` headers, ``Content-Type`` and the body as data."""
    attributes: dict[str, Any] = {}
    for raw_name, value in headers:
        name = raw_name.lower()
        if name.startswith("ce-") and len(name) > 3:
            attr = name[3:]
            if attr in _DATA_KEYS:
                raise EventError(f"header {raw_name!r} does not name a context attribute")
            try:
                attributes[attr] = unquote(value, errors="strict") if "%" in value else value
            except UnicodeDecodeError:
                raise EventError(f"header {raw_name!r} is not percent-encoded UTF-8") from None
    if content_type:
        attributes["datacontenttype"] = content_type
    check_attributes(attributes)
    if not body:
        return CloudEvent(attributes)
    if is_json_media_type(content_type):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            value = _reread_or_refuse(body, error,
                                      f"data is not valid JSON although its content type is {content_type}")
        return CloudEvent(attributes, value, raw_json=body)
    if _is_text_media_type(content_type):
        try:
            return CloudEvent(attributes, body.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return CloudEvent(attributes, bytes(body))


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_http(headers: Mapping[str, str], body: bytes) -> tuple[str, list[CloudEvent]]:
    """The events of an HTTP request in any of the three modes: ``(mode, events)``.

    ``headers`` is a case-insensitive mapping (aiohttp's ``CIMultiDictProxy`` is). The mode is
    decided by the content type, as the HTTP binding says; ``ce-specversion`` marks binary mode.
    """
    content_type = headers.get("Content-Type")
    media = media_type(content_type)
    if media == BATCH_CONTENT_TYPE:
        return "batch", parse_batch(body)
    if media.startswith("application/cloudevents"):
        if media != STRUCTURED_CONTENT_TYPE:
            raise EventError(f"event format {media!r} is not supported; use {STRUCTURED_CONTENT_TYPE}")
        return "structured", [parse_structured(body)]
    if "ce-specversion" in headers:
        return "binary", [parse_binary(headers.items(), body, content_type)]
    raise EventError(
        "not a CloudEvent: send application/cloudevents+json (structured), "
        "application/cloudevents-batch+json (batch), or ce-* headers (binary)"
    )
