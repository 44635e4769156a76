"""The CloudEvents codec: the three HTTP modes, the checks, and round trips with the SDK."""

from __future__ import annotations

import base64
from decimal import Decimal

import orjson
import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from multidict import CIMultiDict

from meshruntime.cloudevents import (
    CloudEvent,
    EventError,
    binary_from_stored,
    is_event_format,
    loads,
    parse_batch,
    parse_binary,
    parse_http,
    parse_structured,
)


def minimal(**overrides):
    return {"specversion": "1.0", "id": "e1", "source": "/s", "type": "t", **overrides}


def http(headers: dict[str, str], body: bytes):
    return parse_http(CIMultiDict(headers), body)


# -- structured -----------------------------------------------------------------------------------

def test_it_reads_a_structured_event_with_extensions_and_json_data():
    body = orjson.dumps(minimal(subject="x", partitionkey="k", count=3, flag=True, data={"a": [1, 2]}))
    mode, [event] = http({"Content-Type": "application/cloudevents+json; charset=utf-8"}, body)
    assert mode == "structured"
    assert event.extensions == {"partitionkey": "k", "count": 3, "flag": True}
    assert event.data == {"a": [1, 2]} and event.json_data() == (True, {"a": [1, 2]})
    assert orjson.loads(event.to_structured()) == orjson.loads(body)


def test_it_reads_data_base64_as_bytes_and_writes_it_back():
    raw = bytes(range(256))
    event = CloudEvent.from_structured(minimal(data_base64=base64.b64encode(raw).decode()))
    assert event.data == raw
    assert orjson.loads(event.to_structured())["data_base64"] == base64.b64encode(raw).decode()
    headers, body = event.to_binary()
    assert body == raw and "content-type" not in headers


def test_null_attributes_count_as_absent():
    event = CloudEvent.from_structured(minimal(subject=None, data=None))
    assert "subject" not in event.attributes and event.data is None


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"id": "1", "source": "/s", "type": "t"}, "'specversion' is missing"),
        (minimal(specversion="0.3"), "specversion '0.3' is not supported"),
        (minimal(id=""), "'id' must be a non-empty string"),
        (minimal(source=7), "'source' must be a non-empty string"),
        ({"specversion": "1.0", "id": "1", "source": "/s"}, "'type' is missing"),
        (minimal(time="yesterday"), "'time' must be an RFC 3339 timestamp"),
        (minimal(subject=5), "'subject' must be a string"),
        (minimal(Bad=1), "extension attribute name 'Bad'"),
        (minimal(my_ext="x"), "extension attribute name 'my_ext'"),
        (minimal(nested={"a": 1}), "'nested' must be a string, an integer or a boolean"),
        (minimal(big=2**40), "outside the 32-bit integer range"),
        (minimal(data={}, data_base64="AA=="), "either data or data_base64"),
        (minimal(data_base64="not base64!"), "data_base64 is not valid base64"),
        ([minimal()], "must be a JSON object"),
    ],
)
def test_it_names_what_is_wrong_with_an_event(event, message):
    with pytest.raises(EventError, match=message):
        http({"Content-Type": "application/cloudevents+json"}, orjson.dumps(event))


def test_it_refuses_bodies_that_are_no_event():
    with pytest.raises(EventError, match="not valid JSON"):
        http({"Content-Type": "application/cloudevents+json"}, b"{nope")
    with pytest.raises(EventError, match="body is empty"):
        http({"Content-Type": "application/cloudevents+json"}, b"")
    with pytest.raises(EventError, match="not supported"):
        http({"Content-Type": "application/cloudevents+avro"}, b"\x00")
    with pytest.raises(EventError, match="not a CloudEvent"):
        http({"Content-Type": "application/json"}, b"{}")


# -- batch ----------------------------------------------------------------------------------------

def test_it_reads_a_batch_and_names_the_failing_index():
    events = parse_batch(orjson.dumps([minimal(id="a"), minimal(id="b", data="text")]))
    assert [e.id for e in events] == ["a", "b"]
    assert parse_batch(b"[]") == []
    with pytest.raises(EventError, match=r"event \[1\]: required attribute 'type'"):
        parse_batch(orjson.dumps([minimal(), {"specversion": "1.0", "id": "x", "source": "/s"}]))
    with pytest.raises(EventError, match="JSON array"):
        parse_batch(b"{}")


# -- binary ---------------------------------------------------------------------------------------

def test_binary_mode_keeps_json_data_byte_for_byte():
    body = b'{ "b": 1,\n  "a": [1.50, 2] }'
    event = parse_binary([("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")],
                         body, "application/json")
    assert event.data == {"b": 1, "a": [1.5, 2]}
    assert event.to_binary()[1] == body
    assert b'"data":' + body in event.to_structured()


def test_binary_mode_decodes_percent_encoded_headers_and_keeps_other_data():
    headers = [("CE-SpecVersion", "1.0"), ("ce-id", "1"), ("ce-source", "/s%20x"), ("ce-type", "t"),
               ("ce-note", "caf%C3%A9 %22q%22"), ("X-Other", "ignored")]
    event = parse_binary(headers, b"\x00\xff", "application/octet-stream")
    assert event.source == "/s x" and event.get("note") == 'café "q"' and "x-other" not in event.attributes
    assert event.data == b"\x00\xff"
    assert orjson.loads(event.to_structured())["data_base64"] == "AP8="
    text = parse_binary(headers, "héllo".encode(), "text/plain; charset=utf-8")
    assert text.data == "héllo" and text.to_binary()[1] == "héllo".encode()


def test_binary_mode_refuses_bad_json_and_missing_attributes():
    base = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")]
    with pytest.raises(EventError, match="data is not valid JSON"):
        parse_binary(base, b"{", "application/json")
    with pytest.raises(EventError, match="'type' is missing"):
        parse_binary(base[:3], b"", None)
    with pytest.raises(EventError, match="not percent-encoded UTF-8"):
        parse_binary([*base, ("ce-x", "%FF")], b"", None)


def test_to_binary_percent_encodes_what_headers_cannot_carry():
    event = CloudEvent({**minimal(), "note": 'a "b" 100% é', "n": 3, "ok": False}, {"x": 1})
    headers, body = event.to_binary()
    assert headers["ce-note"] == "a%20%22b%22%20100%25%20%C3%A9"
    assert headers["ce-n"] == "3" and headers["ce-ok"] == "false"
    assert headers["content-type"] == "application/json" and orjson.loads(body) == {"x": 1}


def test_with_extension_copies():
    event = CloudEvent.from_structured(minimal(data={"a": 1}))
    copy = event.with_extension("meshroute", "route-1")
    assert copy.get("meshroute") == "route-1" and "meshroute" not in event.attributes


# -- the SDK reads what we write, we read what it writes -------------------------------------------

def sdk_event(data, **attributes) -> SdkEvent:
    return SdkEvent({"type": "com.example.t", "source": "/sdk", "partitionkey": "p1", **attributes}, data)


@pytest.mark.parametrize("data", [{"a": [1, "x"], "n": None}, "plain text", b"\x00\x01binary\xff", None])
def test_sdk_structured_round_trip(data):
    content_type = {str: "text/plain", bytes: "application/octet-stream"}.get(type(data), "application/json")
    original = sdk_event(data, datacontenttype=content_type)
    message = sdk_http.to_structured_event(original)
    mode, [ours] = parse_http(CIMultiDict(message.headers), message.body)
    back = JSONFormat().read(None, ours.to_structured())
    assert back.get_attributes() == original.get_attributes()
    assert back.get_data() == original.get_data()


@pytest.mark.parametrize(
    ("data", "content_type"),
    [({"a": 1}, "application/json"), ("plain text", "text/plain"), (b"\x00\xff", "application/octet-stream")],
)
def test_sdk_binary_round_trip(data, content_type):
    original = sdk_event(data, datacontenttype=content_type, subject="sub ject")
    message = sdk_http.to_binary_event(original)
    mode, [ours] = parse_http(CIMultiDict(message.headers), message.body)
    assert mode == "binary"
    headers, body = ours.to_binary()
    assert body == message.body
    back = sdk_http.from_binary_event(sdk_http.HTTPMessage(headers=headers, body=body))
    assert back.get_attributes() == original.get_attributes() and back.get_data() == original.get_data()


def test_from_structured_leaves_the_callers_dict_alone():
    given = minimal(data={"a": 1}, data_base64=None, subject=None)
    snapshot = dict(given)
    event = CloudEvent.from_structured(given)
    assert given == snapshot and event.data == {"a": 1} and "subject" not in event.attributes


# -- data as the producer wrote it ------------------------------------------------------------------

HEAD = b'"specversion": "1.0", "id": "e1", "source": "/s", "type": "t"'
NUMBERS = b'{"n": 123456789012345678901234567890, "d": 0.1000000000000000000000001, "f": 1.50, "x": 1e400}'


def stored_and_pushed(event: CloudEvent) -> tuple[bytes, bytes]:
    """The event as stored, and the body of its binary push (read back from the stored JSON)."""
    stored = event.to_structured()
    return stored, binary_from_stored(stored, loads(stored))[1]


@pytest.mark.parametrize(("body", "data"), [
    (b"{" + HEAD + b', "data": ' + NUMBERS + b"}", NUMBERS),  # spaced, data last
    (b'{"data":' + NUMBERS + b"," + HEAD.replace(b" ", b"") + b"}", NUMBERS),  # data first
    (b'{"data": {"data": 1.0, "a": [ {"data": 2.50} ]},' + HEAD + b"}", b'{"data": 1.0, "a": [ {"data": 2.50} ]}'),
    (b"{" + HEAD + b', "data" :\n "\\u00fc \xc3\xbc" , "subject": "s"}', b'"\\u00fc \xc3\xbc"'),  # data between
    (b'{"specversion":"1.0","id":"e1","source":"/s","type":"t","data":1.50}', b"1.50"),  # compact, data last
    (b'{"specversion":"1.0","id":"e1","source":"/s","type":"t","data":-0,"subject":"s"}', b"-0"),
    (b'\n {"specversion":"1.0","id":"e1","source":"/s","type":"t","data":  [1E2]  } \n', b"[1E2]"),
])
def test_structured_data_is_stored_and_pushed_as_written(body, data):
    event = parse_structured(body)
    assert event.raw_json == data
    stored, pushed = stored_and_pushed(event)
    assert stored.endswith(b',"data":' + data + b"}") and pushed == data


def test_compact_data_is_kept_as_its_text_too():
    body = orjson.dumps(minimal(data={"a": [1, 2.5, "ü"]}))
    event = parse_structured(body)
    assert event.raw_json == b'{"a":[1,2.5,"\xc3\xbc"]}' and stored_and_pushed(event) == (body, event.raw_json)


def test_a_batch_keeps_the_data_of_each_event_as_written():
    body = (b'[ {"specversion":"1.0","id":"a","source":"/s","type":"t","data":1.50},\n'
            b'  {"data": {"k": 10000000000000000000000}, ' + HEAD.replace(b"e1", b"b") + b"},\n"
            b'  {"specversion":"1.0","id":"c","source":"/s","type":"t","data":{"k":1}} ]')
    events = parse_batch(body)
    assert [e.id for e in events] == ["a", "b", "c"]
    assert [stored_and_pushed(e)[1] for e in events] == [b"1.50", b'{"k": 10000000000000000000000}', b'{"k":1}']
    assert [e.raw_json for e in parse_batch(orjson.dumps([minimal(data={"k": 1})]))] == [None]


def test_a_binary_body_is_pushed_byte_for_byte_from_a_routed_copy_too():
    headers = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")]
    body = b'  {"order_id": "c9",  "amount": 1.50, "note": "\\u00fc \xc3\xbc"}\n'
    event = parse_binary(headers, body, "application/json")
    stored, pushed = stored_and_pushed(event)
    assert pushed == body
    copy = stored[:-1] + b',"meshroute":"route-1"}'  # how publish makes a routed copy
    assert binary_from_stored(copy, loads(copy)) == ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s",
                                                      "ce-type": "t", "ce-meshroute": "route-1",
                                                      "content-type": "application/json"}, body)
    # a copy published again is routed on: its meshroute is replaced, before the data
    routed = parse_binary([*headers, ("ce-meshroute", "route-1")], body, "application/json")
    again = routed.with_extension("meshroute", "route-2").to_structured()
    assert binary_from_stored(again, loads(again))[1] == body


def test_text_data_is_pushed_as_its_text():
    event = parse_structured(b"{" + HEAD + b', "datacontenttype": "text/plain", "data": "h\\u00e9llo \\"x\\""}')
    assert event.data == 'héllo "x"' and stored_and_pushed(event)[1] == 'héllo "x"'.encode()


def test_numbers_a_double_cannot_hold_are_exact_for_a_schema():
    event = parse_structured(b"{" + HEAD + b', "data": ' + NUMBERS + b"}")
    assert event.json_data() == (True, {"n": 123456789012345678901234567890, "f": Decimal("1.50"),
                                        "d": Decimal("0.1000000000000000000000001"), "x": Decimal("1e400")})
    binary = parse_binary([("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t")],
                          b"[18446744073709551616]", "application/json")
    assert binary.json_data() == (True, [18446744073709551616])
    assert parse_structured(orjson.dumps(minimal(data={"n": 1.5}))).json_data() == (True, {"n": 1.5})


def test_an_extension_beyond_32_bits_is_refused_whatever_its_size():
    with pytest.raises(EventError, match="'big' must be a string, an integer or a boolean; 1.2345678901234568e"):
        parse_structured(b"{" + HEAD + b', "big": 123456789012345678901234567890}')
    with pytest.raises(EventError, match="'big' must be a string, an integer or a boolean; 1E[+]400"):
        parse_structured(b"{" + HEAD + b', "big": 1e400}')


def test_a_cloudevents_format_is_recognised_by_its_media_type():
    assert is_event_format("application/cloudevents+json") and is_event_format("Application/CloudEvents+avro; x=y")
    assert is_event_format("application/cloudevents-batch+json")
    assert not is_event_format("application/json") and not is_event_format(None)
