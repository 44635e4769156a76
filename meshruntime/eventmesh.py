"""Apache EventMesh HTTP requests, so that EventMesh's clients publish unchanged.

Pure: parsing and answers only; the runtime (``meshruntime.app``) authenticates, publishes and,
for request–reply, waits (``meshruntime.replies``). What Apache EventMesh accepts was read from
its source (runtime processors ``SendAsyncEventProcessor``, ``SendAsyncMessageProcessor``,
``SendSyncMessageProcessor``, ``BatchSendMessage[V2]Processor``; ``HttpEventWrapper``; the
``cloudevents`` and ``eventmeshmessage`` protocol resolvers; the Java SDK's HTTP producers). The
exact requests the Java SDK sends are test fixtures: ``tests/meshruntime/fixtures/eventmesh/``.

EventMesh's requests:

- ``POST /eventmesh/publish/{topic}`` (``SendAsyncEventProcessor``): any JSON body becomes the
  data of a new CloudEvent (``id`` a fresh UUID, ``subject`` the topic, ``source`` and ``type``
  from their headers, extension ``producergroup``). As in EventMesh, everything after
  ``/eventmesh/publish/`` is the topic (``/eventmesh/publish/batch`` publishes to ``batch``).
- The request-code form, ``POST /`` (or ``/eventmesh/publish``) with header ``code`` and a form
  body (``application/x-www-form-urlencoded``), what the Java SDK's producers send:

  ==== =========================== ============================================================
  code protocoltype                form fields
  ==== =========================== ============================================================
  104  ``cloudevents``             ``producergroup``, ``content`` = one CloudEvent as JSON
  104  ``eventmeshmessage``        ``producergroup``, ``topic``, ``content``, ``bizseqno``,
                                   ``uniqueid``, ``ttl``, ``tag``
  101  either                      as 104; request–reply: the answer carries the reply, and the
                                   request needs ``ttl`` (ms; the event's ``ttl`` extension in
                                   ``cloudevents``)
  102  ``eventmeshmessage``        ``batchId``, ``size``, ``producerGroup``, ``contents`` = JSON
                                   array of ``{bizSeqNo, topic, msg, tag, ttl}``
  107  ``cloudevents``             ``producergroup``, ``msg`` = one CloudEvent
  107  ``eventmeshmessage``        ``producergroup``, ``bizseqno``, ``topic``, ``msg``, ``tag``,
                                   ``ttl``
  ==== =========================== ============================================================

  An ``eventmeshmessage`` becomes a CloudEvent as EventMesh's resolver makes it: ``id`` =
  ``bizseqno``, ``subject`` = ``topic``, ``type`` ``eventmeshmessage``, ``source`` ``/``; its
  ``content`` (``msg``) is the data: ``application/json`` when it is a JSON object or array (its
  bytes kept), ``text/plain; charset=utf-8`` otherwise.
- Identity headers ``env``, ``idc``, ``ip``, ``pid``, ``sys``, ``username`` become extensions of
  the event, as in EventMesh. The application key travels in ``passwd`` (the SDK's password), in
  ``Authorization: Bearer`` or ``token``; it is never stored.
- Answers are HTTP 200 with ``{"retCode": <int>, "retMsg": <str>}``, codes from EventMesh's
  ``EventMeshRetCode``.

Not EventMesh's, and no longer accepted: a 102 whose ``contents`` were CloudEvents, and a
``/eventmesh/publish/batch`` route for a JSON array of CloudEvents (both were this project's own
inventions; EventMesh's clients never sent them, and the route shadowed a topic named ``batch``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl

import orjson

from .cloudevents import CloudEvent, EventError, check_attributes, loads, member_text

if TYPE_CHECKING:
    from .replies import Reply

__all__ = [
    "CodeRequest",
    "EventMeshError",
    "RET_ACL",
    "RET_OK",
    "eventmesh_key",
    "form_fields",
    "parse_code_request",
    "parse_path_publish",
    "reply",
    "reply_to_request",
    "ret_code_for",
]

# EventMeshRetCode (eventmesh-common ... protocol/http/common/EventMeshRetCode.java)
RET_OK = 0
RET_REQUESTCODE_INVALID = 2
RET_SEND_SYNC_MSG_ERR = 3
RET_WAITING_RR_MSG_ERR = 4
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

CLOUDEVENTS = "cloudevents"
EVENTMESH_MESSAGE = "eventmeshmessage"
PROTOCOLS = (CLOUDEVENTS, EVENTMESH_MESSAGE)

DEFAULT_PRODUCER_GROUP = "em-http-producer"
# Identity headers copied onto events as extensions (EventMesh does the same); never secrets.
IDENTITY_EXTENSIONS = ("env", "idc", "ip", "pid", "sys", "username")
TEXT = "text/plain; charset=utf-8"

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
    "store_not_configured": RET_SEND_ASYNC_MSG_ERR,
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


class CodeRequest(NamedTuple):
    """A parsed request-code request: its code, its ``(topic, event)`` items and, for 101, how
    long the client waits for the reply (its ``ttl``, in milliseconds)."""

    code: str
    items: list[tuple[str, CloudEvent]]
    reply_wait_ms: int | None = None


def ret_code_for(reason: str) -> int:
    return _RET_BY_REASON.get(reason, RET_RUNTIME_ERR)


def reply(ret_code: int, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"retCode": ret_code, "retMsg": message, **extra})


def reply_to_request(topic: str, request: CloudEvent, answer: Reply | None, waited_s: float) -> tuple[int, str]:
    """``(retCode, retMsg)`` for a request (code 101) and what its responder answered.

    As EventMesh's ``SendSyncMessageProcessor``: 0 with ``retMsg`` the JSON of ``ReplyMessage``
    ``{"topic", "body", "properties"}`` (the Java SDK's ``request()`` parses it), or
    ``EVENTMESH_WAITING_RR_MSG_ERR`` (4). ``body`` is the answer's text; ``properties`` say what
    answered: the request's ``id``, the answer's ``datacontenttype``, ``meshsubscription`` and
    ``meshstatus``."""
    if answer is None:
        return RET_WAITING_RR_MSG_ERR, (f"eventMesh waiting rr msg err, no reply to event {request.id!r} on topic "
                                        f"{topic!r} within {round(waited_s * 1000)} ms; the event is stored and "
                                        "will still be delivered")
    if answer.error is not None:
        return RET_WAITING_RR_MSG_ERR, f"eventMesh waiting rr msg err, {answer.error}"
    try:
        text = answer.body.decode("utf-8")
    except UnicodeDecodeError:
        return RET_WAITING_RR_MSG_ERR, ("eventMesh waiting rr msg err, the responder's answer is not UTF-8 text, "
                                        "which EventMesh's reply (a string) cannot carry")
    properties = {"id": request.id, "subject": topic, "meshsubscription": answer.subscription,
                  "meshstatus": str(answer.status)}
    if answer.content_type:
        properties["datacontenttype"] = answer.content_type
    message = {"topic": topic, "body": text, "properties": properties}
    return RET_OK, orjson.dumps(message).decode()


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


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a request-code request: a form (what EventMesh's clients send; a field
    without ``=``, the SDK's null, is empty), or a JSON object with the same fields."""
    if not body:
        return {}
    if content_type == "application/json" or body[:1] == b"{":
        try:
            value = loads(body)
        except orjson.JSONDecodeError:
            raise EventMeshError(RET_PROTOCOL_BODY_ERR, "the body is not valid JSON") from None
        if not isinstance(value, dict):
            raise EventMeshError(RET_PROTOCOL_BODY_ERR, "the body must be a JSON object")
        # a field given as JSON (a CloudEvent object rather than its text) is its text, as written
        return {k: v if isinstance(v, str) else member_text(body, k).decode("utf-8") for k, v in value.items()
                if v is not None}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, "the form is not UTF-8") from None


def _identity_extensions(headers: Mapping[str, str], producer_group: str | None) -> dict[str, str]:
    out = {name: headers[name] for name in IDENTITY_EXTENSIONS if headers.get(name)}
    out["producergroup"] = producer_group or headers.get("producergroup") or DEFAULT_PRODUCER_GROUP
    return out


def parse_path_publish(topic: str, headers: Mapping[str, str], body: bytes, remote: str | None) -> CloudEvent:
    """``POST /eventmesh/publish/{topic}``: the JSON body wrapped as a new CloudEvent."""
    if not body:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, "the body is empty; EventMesh publishes a JSON body")
    try:
        value = loads(body)
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


# -- the request-code form --------------------------------------------------------------------------

def parse_code_request(headers: Mapping[str, str], form: Mapping[str, str]) -> CodeRequest:
    """A request-code request (``code`` header, form fields), as EventMesh's processors read it."""
    code = (headers.get("code") or form.get("code") or "").strip()
    if not code.isdigit():
        raise EventMeshError(RET_REQUESTCODE_INVALID, "the code header is missing or not a number")
    if code not in PUBLISH_CODES:
        raise EventMeshError(RET_REQUESTCODE_INVALID,
                             f"request code {code} is not a publish (101, 102, 104 or 107)")
    protocol = (headers.get("protocoltype") or CLOUDEVENTS).lower()
    if protocol not in PROTOCOLS:
        raise EventMeshError(RET_PROTOCOL_HEADER_ERR,
                             f"protocoltype {protocol!r} is not supported; send cloudevents or eventmeshmessage")
    if code == CODE_BATCH:
        return CodeRequest(code, _batch(headers, form))
    field = "msg" if code == CODE_BATCH_V2 else "content"
    extensions = _identity_extensions(headers, form.get("producergroup"))
    if protocol == EVENTMESH_MESSAGE:
        event = _message_event(form, field, extensions)
        ttl = form.get("ttl")
    else:
        raw = form.get(field) or form.get("content")
        if not raw:
            raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                                 f"code {code} needs the {field} field (a CloudEvent as JSON)")
        event = _cloudevent(raw, extensions)
        ttl = event.attributes.get("ttl")
    topic = event.attributes.get("subject") or form.get("topic")
    if not topic:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                             "no topic: EventMesh takes it from the event's subject (or the topic field)")
    wait_ms = _reply_wait_ms(ttl) if code == CODE_SEND_SYNC else None
    return CodeRequest(code, [(topic, event)], wait_ms)


def _reply_wait_ms(ttl: Any) -> int:
    """Code 101 waits for its reply for ``ttl`` milliseconds, which EventMesh requires too."""
    text = str(ttl).strip() if ttl is not None else ""
    if not text.isdigit() or int(text) <= 0:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                             "code 101 (request-reply) needs ttl: how many milliseconds to wait for the reply "
                             "(the ttl field of an eventmeshmessage, the ttl extension of a CloudEvent)"
                             + (f"; got {text!r}" if text else ""))
    return int(text)


def _cloudevent(content: Any, extensions: Mapping[str, str], index: int | None = None) -> CloudEvent:
    try:
        event = CloudEvent.from_structured(content, index=index)
    except EventError as error:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, f"content is not a CloudEvent: {error}") from None
    for name, value in extensions.items():
        event.attributes.setdefault(name, value)
    return event


def _message_data(content: str) -> tuple[dict[str, str], Any, bytes | None]:
    """``(datacontenttype, data, raw JSON)`` of an eventmeshmessage's content (see the module)."""
    stripped = content.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            return {"datacontenttype": "application/json"}, loads(content), content.encode()
        except orjson.JSONDecodeError:
            pass
    return {"datacontenttype": TEXT}, content, None


def _message_event(fields: Mapping[str, Any], data_field: str, extensions: Mapping[str, str],
                   where: str = "") -> CloudEvent:
    """An eventmeshmessage (``bizseqno``, ``topic``, ``content`` / ``msg``, ``ttl``, ``tag``,
    ``uniqueid``) as the CloudEvent EventMesh's resolver makes of it."""
    biz = fields.get("bizseqno") or fields.get("bizSeqNo")
    topic = fields.get("topic")
    content = fields.get(data_field)
    if not isinstance(biz, str) or not biz.strip():
        raise EventMeshError(RET_PROTOCOL_HEADER_ERR, f"{where}an eventmeshmessage needs bizseqno, its id")
    if not isinstance(topic, str) or not topic.strip():
        raise EventMeshError(RET_PROTOCOL_HEADER_ERR, f"{where}an eventmeshmessage needs topic")
    if not isinstance(content, str):
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, f"{where}an eventmeshmessage needs {data_field}, its data")
    type_, data, raw = _message_data(content)
    attributes: dict[str, Any] = {"specversion": "1.0", "id": biz, "source": "/", "type": EVENTMESH_MESSAGE,
                                  "subject": topic, **type_}
    for name in ("uniqueid", "ttl", "tag"):
        value = fields.get(name)
        if value.__class__ in (str, int) and value != "":  # the SDK sends strings; JSON writers may not
            attributes[name] = str(value)
    attributes["bizseqno"] = biz
    for name, value in extensions.items():
        attributes.setdefault(name, value)
    try:
        check_attributes(attributes)
    except EventError as error:
        raise EventMeshError(RET_PROTOCOL_HEADER_ERR, f"{where}{error}") from None
    return CloudEvent(attributes, data, raw_json=raw)


def _batch(headers: Mapping[str, str], form: Mapping[str, str]) -> list[tuple[str, CloudEvent]]:
    """Code 102, ``SendMessageBatchRequestBody``: ``batchId``, ``size``, ``producerGroup`` and
    ``contents``, a JSON array of ``{bizSeqNo, topic, msg, tag, ttl}``. ``size`` must count the
    entries (EventMesh takes a missing one as 1)."""
    batch_id = (form.get("batchId") or "").strip()
    group = (form.get("producerGroup") or "").strip()
    raw = form.get("contents")
    if not batch_id or not group:
        missing = " and ".join(name for name, value in (("batchId", batch_id), ("producerGroup", group)) if not value)
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, f"a batch (code 102) needs {missing}")
    if not raw:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                             "a batch (code 102) needs contents, a JSON array of {bizSeqNo, topic, msg, tag, ttl}")
    try:
        entries = loads(raw)
    except orjson.JSONDecodeError as error:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR, f"contents is not valid JSON: {error}") from None
    if not isinstance(entries, list) or not entries:
        raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                             "contents must be a non-empty JSON array of {bizSeqNo, topic, msg, tag, ttl}")
    size = (form.get("size") or "").strip() or "1"
    if size != str(len(entries)):
        raise EventMeshError(RET_PROTOCOL_BODY_ERR,
                             f"size is {size} but contents has {len(entries)} entries")
    extensions = {**_identity_extensions(headers, group), "batchid": batch_id}
    items = []
    for index, entry in enumerate(entries):
        where = f"contents[{index}]: "
        if not isinstance(entry, dict):
            raise EventMeshError(RET_PROTOCOL_BODY_ERR, f"{where}an entry is a JSON object {{bizSeqNo, topic, msg, "
                                 "tag, ttl}")
        event = _message_event(entry, "msg", extensions, where)
        items.append((event.attributes["subject"], event))
    return items
