"""Apache EventMesh HTTP publish requests, so that EventMesh HTTP clients can publish unchanged.

What Apache EventMesh's runtime accepts (read from its source, ``eventmesh-runtime`` processors,
``HttpEventWrapper`` and the ``cloudevents`` protocol resolvers), and what we make of it:

- ``POST /eventmesh/publish/{topic}`` (``SendAsyncEventProcessor``): any JSON body becomes the data
  of a new CloudEvent: ``id`` a fresh UUID, ``subject`` the topic, ``source`` the ``source``
  header (else the client's address), ``type`` the ``type`` header (else ``http_request``),
  extension ``producergroup`` from its header (else ``em-http-producer``).
- The older form (``SendAsyncMessageProcessor``, ``SendSyncMessageProcessor``,
  ``BatchSendMessage[V2]Processor``): a POST whose ``code`` header says what it is -- 104
  asynchronous send, 101 synchronous send, 102 batch, 107 batch v2 -- with form fields
  ``producergroup`` and ``content`` (104/101: one CloudEvent as JSON), ``contents`` (102: a JSON
  array of CloudEvents) or ``msg`` (107: one CloudEvent), plus identity headers ``env``, ``idc``,
  ``ip``, ``pid``, ``sys``, ``username``, ``passwd``. The topic is the event's ``subject`` (else
  the ``topic`` field).
- Replies are HTTP 200 with ``{"retCode": <int>, "retMsg": <str>}``, codes from EventMesh's
  ``EventMeshRetCode``.

The application key travels as ``Authorization: Bearer``, or -- for clients that cannot add a
header -- in EventMesh's ``passwd`` (or ``token``) header. ``passwd`` and ``token`` are never
stored; the other identity headers become extensions of the event, as EventMesh does.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from .cloudevents import CloudEvent, EventError, check_attributes

__all__ = [
    "EventMeshError",
    "RET_ACL",
    "RET_OK",
    "ret_code_for",
    "parse_code_request",
    "parse_path_batch",
    "parse_path_publish",
    "reply",
]

# EventMeshRetCode (eventmesh-common ... protocol/http/common/EventMeshRetCode.java)
RET_OK = 0
RET_REQUESTCODE_INVALID = 2
RET_PROTOCOL_HEADER_ERR = 6
RET_PROTOCOL_BODY_ERR = 7
RET_PROTOCOL_BODY_SIZE_ERR = 8
RET_STOP = 9
RET_SEND_ASYNC_MSG_ERR = 15
RET_RUNTIME_ERR = 18
RET_ACL = 22
RET_OVER_LIMIT = 23

CODE_SEND_SYNC = "101"
CODE_BATCH = "102"
CODE_SEND_ASYNC = "104"
CODE_BATCH_V2 = "107"
PUBLISH_CODES = (CODE_SEND_SYNC, CODE_BATCH, CODE_SEND_ASYNC, CODE_BATCH_V2)

DEFAULT_PRODUCER_GROUP = "em-http-producer"
# Identity headers copied onto events as extensions (EventMesh does the same); never secrets.
IDENTITY_EXTENSIONS = ("env", "idc", "ip", "pid", "sys", "username")

# Our refusal reasons -> EventMesh codes (documented in docs/runtime.md).
_RET_BY_REASON = {
    "unauthenticated": RET_ACL,
    "forbidden": RET_ACL,
    "unknown_topic": RET_ACL,
    "invalid_event": RET_PROTOCOL_BODY_ERR,
    "schema_mismatch": RET_PROTOCOL_BODY_ERR,
    "too_large": RET_PROTOCOL_BODY_SIZE_ERR,
    "too_many": RET_OVER_LIMIT,
    "store_unavailable": RET_SEND_ASYNC_MSG_ERR,
    "not_ready": RET_RUNTIME_ERR,
    "shutting_down": RET_STOP,
}


class EventMeshError(Exception):
    """A request EventMesh itself would refuse before any of our checks."""

    def __init__(self, ret_code: int, message: str, reason: str = "invalid_event") -> None:
        super().__init__(message)
        self.ret_code = ret_code
        self.message = message
        self.reason = reason


def ret_code_for(reason: str) -> int:
    return _RET_BY_REASON.get(reason, RET_RUNTIME_ERR)


def reply(ret_code: int, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"retCode": ret_code, "retMsg": message, **extra})


def eventmesh_key(headers: Mapping[str, str], form: Mapping[str, str] | None = None) -> str | None:
    """The application key: ``Authorization`` first, then EventMesh's ``passwd`` / ``token``."""
    authorization = headers.get("Authorization")
    if authorization:
        return authorization
    for name in ("passwd", "token"):
        value = headers.get(name) or (form or {}).get(name)
        if value:
            return value
    return None


def _identity_extensions(headers: Mapping[str, str], producer_group: str | None) -> dict[str, str]:
    out = {name: headers[name] for name in IDENTITY_EXTENSIONS if headers.get(name)}
    out["producergroup"] = producer_group or headers.get("producergroup") or DEFAULT_PRODUCER_GROUP
    return out


def parse_path_publish(topic: str, headers: Mapping[str, str], body: bytes, remote: str | None) -> CloudEvent:
    """``POST /eventmesh/publish/{topic}``: the JSON body wrapped as a new CloudEvent."""
    if not body:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, "the body is empty; EventMesh publishes a JSON body")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, f"the body is not valid JSON: {error}") from None
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": headers.get("source") or f"/eventmesh/{remote or 'unknown'}",
        "type": headers.get("type") or "http_request",
        "subject": topic,
        "datacontenttype": "application/json",
    }
    attributes.update(_identity_extensions(headers, None))
    try:
        check_attributes(attributes)
    except EventError as error:
        raise EventMeshError(RET_PROTOCOL_HEADER_ERR, str(error)) from None
    return CloudEvent(attributes, value, raw_json=bytes(body))


def _event_from_content(content: Any, extensions: Mapping[str, str], fallback_topic: str | None,
                        index: int | None = None) -> tuple[str, CloudEvent]:
    if isinstance(content, str):
        try:
            content = orjson.loads(content)
        except orjson.JSONDecodeError as error:
            raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                                 f"content is not a CloudEvent in JSON: {error}") from None
    try:
        event = CloudEvent.from_structured(content, index=index)
    except EventError as error:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, str(error)) from None
    for name, value in extensions.items():
        event.attributes.setdefault(name, value)
    topic = event.attributes.get("subject") or fallback_topic
    if not topic:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                             "no topic: EventMesh takes it from the event's subject (or the topic field)")
    return topic, event


def parse_path_batch(headers: Mapping[str, str], body: bytes) -> list[tuple[str, CloudEvent]]:
    """``POST /eventmesh/publish/batch``: a JSON array of CloudEvents, topics in their ``subject``."""
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, f"the body is not valid JSON: {error}") from None
    if not isinstance(items, list):
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, "a batch is a JSON array of CloudEvents")
    extensions = _identity_extensions(headers, None)
    return [_event_from_content(item, extensions, None, index=i) for i, item in enumerate(items)]


def parse_code_request(
    headers: Mapping[str, str], form: Mapping[str, str]
) -> tuple[str, list[tuple[str, CloudEvent]]]:
    """The older request form: ``code`` header, form fields. Returns ``(code, [(topic, event)])``."""
    code = (headers.get("code") or form.get("code") or "").strip()
    if not code.isdigit():
        raise EventMeshError(RET_REQUESTCODE_INVALID, "the code header is missing or not a number")
    if code not in PUBLISH_CODES:
        raise EventMeshError(RET_REQUESTCODE_INVALID,
                             f"request code {code} is not a publish (101, 102, 104 or 107)")
    protocol = (headers.get("protocoltype") or "cloudevents").lower()
    if protocol != "cloudevents":
        raise EventMeshError(RET_PROTOCOL_HEADER_ERR,
                             f"protocoltype {protocol!r} is not supported; send protocoltype cloudevents")
    extensions = _identity_extensions(headers, form.get("producergroup"))
    topic = form.get("topic") or None
    if code == CODE_BATCH:
        raw = form.get("contents")
        if not raw:
            raise EventMeshError(RET_PROTOCOL_BODY_ERR, "a batch (code 102) needs the contents field")
        try:
            items = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise EventMeshError(RET_PROTOCOL_BODY_ERR, f"contents is not valid JSON: {error}") from None
        if not isinstance(items, list):
            raise EventMeshError(RET_PROTOCOL_BODY_ERR, "contents must be a JSON array of CloudEvents")
        return code, [_event_from_content(item, extensions, topic, index=i) for i, item in enumerate(items)]
    field = "msg" if code == CODE_BATCH_V2 else "content"
    raw = form.get(field) or form.get("content")
    if not raw:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                             f"code {code} needs the {field} field (a CloudEvent as JSON)")
    return code, [_event_from_content(raw, extensions, topic)]
