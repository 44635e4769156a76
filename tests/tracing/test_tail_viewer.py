"""A viewer's work follows what it shows, not what the runtimes tap: messages built exactly as a
runtime sends them (``meshruntime.tapwire``), offered to viewers as the hub offers them."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from meshruntime.cloudevents import CloudEvent
from meshruntime.tap import compact
from meshruntime.tapwire import TapMessage, decode, encode
from tracing.presenting import _data as browser_data
from tracing.tail import Viewer, present, view


def stored(i: int, **event: Any) -> dict[str, Any]:
    """An event as a runtime stores it (the CloudEvents JSON format)."""
    return {"specversion": "1.0", "id": f"evt-{i}", "source": "/checkout", "type": "com.example.order.created",
            "subject": f"o-{i}", "customer": f"c-{i}", "datacontenttype": "application/json",
            "data": {"order_id": f"o-{i}", "amount": i}, **event}


def copy_of(event: dict[str, Any] | orjson.Fragment, i: int = 0) -> bytes:
    """A runtime's copy of a stored event: its fields around the event as stored (a fragment: as
    the runtime stored it)."""
    return orjson.dumps({"topic": "orders.created", "outcome": "stored", "application": "checkout",
                         "runtime": "r-1", "stream_id": f"{i}-0", "at": 1_700_000_000_000 + i, "event": event})


def message(copies: list[bytes], dropped: int = 0) -> TapMessage:
    [data] = encode(copies, dropped)
    return decode(data)


class Browser:
    """What one viewer sent, as the browser reads it."""

    def __init__(self, *, payload: bool = True, rate: int = 50) -> None:
        self.frames: list[dict[str, Any]] = []
        self.viewer = Viewer(self.receive, payload=payload, rate=rate, max_rate=50)

    async def receive(self, frame: dict[str, Any]) -> None:
        self.frames.append(orjson.loads(orjson.dumps(frame)))  # as the socket carries it

    async def events(self) -> list[dict[str, Any]]:
        await self.viewer.flush()
        return [e for f in self.frames if f["type"] == "events" for e in f["events"]]


async def test_twenty_viewers_of_a_flood_decode_only_the_copies_they_show_and_each_once():
    flood = message([copy_of(stored(i), i) for i in range(1000)])
    browsers = [Browser() for _ in range(20)]
    for browser in browsers:
        browser.viewer.offer(flood)
    assert flood.decoded == 50  # a second's worth, shared: not 1,000, nor 20 times 50
    shown = [await b.events() for b in browsers]
    assert all(events == shown[0] for events in shown)
    assert [e["attributes"]["id"] for e in shown[0]] == [f"evt-{i}" for i in range(0, 1000, 20)]  # evenly spread
    for browser in browsers:
        counts = browser.viewer.counts
        assert (counts.received, counts.matched, counts.shown, counts.skipped) == (1000, 1000, 50, 950)


async def test_copies_nobody_is_shown_are_never_parsed():
    good = copy_of(stored(0))
    not_json = b"{" + b"x" * (len(good) - 2) + b"}"  # a copy no decoder would take
    browser = Browser(rate=1)
    flood = message([good] + [not_json] * 99)
    browser.viewer.offer(flood)
    assert [e["attributes"]["id"] for e in await browser.events()] == ["evt-0"]
    assert flood.decoded == 1 and browser.viewer.counts.skipped == 99


async def test_a_filter_decodes_every_copy_once_for_all_the_filtered_viewers():
    flood = message([copy_of(stored(i, subject="big" if i % 10 == 0 else "small"), i) for i in range(100)])
    filtered = [Browser(), Browser(payload=False)]
    for browser in filtered:
        browser.viewer.handle({"type": "filter", "filters": [{"exact": {"subject": "big"}}]})
        browser.viewer.offer(flood)
    assert flood.decoded == 100  # every one, to know which match: once, whoever asks
    whole, masked = [await b.events() for b in filtered]
    assert [e["attributes"]["id"] for e in whole] == [f"evt-{i}" for i in range(0, 100, 10)]
    assert whole[0]["attributes"]["customer"] == "c-0" and whole[0]["data"] == '{"order_id":"o-0","amount":0}'
    assert [e["attributes"] for e in masked][0] == {"id": "evt-0", "type": "com.example.order.created",
                                                    "source": "/checkout", "subject": "big"}
    assert masked[0]["masked"] is True and "data" not in masked[0] and "c-0" not in str(masked)
    assert filtered[1].viewer.counts.matched == 10


async def test_json_data_is_shown_as_the_producer_wrote_it_every_digit_kept():
    data = b'{ "n": 12345678901234567890123, "ratio": 0.1000000000000000055511151231257827, "huge": 1E400 }'
    event = CloudEvent.from_structured(b'{"specversion":"1.0","id":"evt-1","source":"/checkout","type":"t",'
                                       b'"datacontenttype":"application/json","data":' + data + b"}")
    refused = orjson.dumps({**compact(event), "topic": "orders.created", "outcome": "denied", "at": 1})
    browser = Browser()
    browser.viewer.offer(message([copy_of(orjson.Fragment(event.to_structured())), refused]))
    shown = await browser.events()
    expected = ("evt-1", data.decode(), len(data))
    assert [(e["attributes"]["id"], e["data"], e["data_size"]) for e in shown] == [expected] * 2


async def test_what_the_runtimes_could_not_send_is_counted_as_lost():
    browser = Browser()
    browser.viewer.offer(message([copy_of(stored(1))], dropped=7))
    browser.viewer.offer(message([], dropped=3))
    counts = browser.viewer.counts
    assert (counts.received, counts.shown, counts.lost) == (1, 1, 10)
    stats = browser.viewer.stats()
    assert stats["totals"]["lost"] == 10 and stats["per_interval"]["lost"] == 10


def test_a_stored_event_is_shown_as_the_page_reads_a_copy_with_the_event_browsers_sizes():
    cases = {
        "json": stored(1, data={"order_id": "o-1", "note": "héllo"}),
        "text": stored(2, datacontenttype="text/plain", data="héllo\nworld"),
        "base64": {**stored(3, datacontenttype="application/octet-stream"), "data": None,
                   "data_base64": base64.b64encode(bytes(range(7))).decode()},
        None: {k: v for k, v in stored(4).items() if k not in ("data", "datacontenttype")},
    }
    for encoding, event in cases.items():
        event = {k: v for k, v in event.items() if v is not None}
        shown = view(orjson.loads(copy_of(event)))
        assert shown.get("data_encoding") == encoding, encoding
        assert shown["data_size"] == browser_data(event, orjson.dumps(event))[2], encoding  # the Events tab
        assert shown["attributes"] == {k: v for k, v in event.items() if k not in ("data", "data_base64")}
        assert (shown["topic"], shown["outcome"], shown["stream_id"]) == ("orders.created", "stored", "0-0")
        whole = present(shown, payload=True)
        assert ("data" in whole) is (encoding is not None)
        masked = present(shown, payload=False)
        assert masked["data_size"] == shown["data_size"] and "data" not in masked and "customer" not in str(masked)
    assert view(orjson.loads(copy_of(cases["base64"])))["data_size"] == 7


async def test_a_copy_an_older_runtime_sent_is_shown_as_it_was():
    older = {"topic": "orders.created", "outcome": "stored", "application": "checkout", "runtime": "r-0",
             "at": 1, "stream_id": "1-0", "attributes": stored(1) | {"data": None},
             "data": {"order_id": "o-1"}, "data_encoding": "json", "data_size": 16}
    older["attributes"].pop("data")
    [data] = [orjson.dumps([older])]  # one JSON array per message, before the framed format
    browser = Browser()
    browser.viewer.offer(decode(data))
    [event] = await browser.events()
    assert event["data"] == '{"order_id":"o-1"}' and event["data_size"] == 16 and event["attributes"]["id"] == "evt-1"
