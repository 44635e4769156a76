"""The pure rules of delivery: what is retried, how long to wait, the signature, the specs."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from factories import make_config, subscription

from meshruntime.delivery import (
    SignatureError,
    Verdict,
    backoff_seconds,
    classify_status,
    parse_retry_after,
    retry_wait_seconds,
    sign,
    signature_header,
    specs_from_config,
    verify,
)
from meshruntime.delivery.spec import group_start
from meshruntime.filters import FilterError


@pytest.mark.parametrize(("status", "verdict"), [
    (200, Verdict.DELIVERED), (201, Verdict.DELIVERED), (204, Verdict.DELIVERED), (299, Verdict.DELIVERED),
    (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY), (599, Verdict.RETRY),
    (408, Verdict.RETRY), (429, Verdict.RETRY),
    (400, Verdict.REJECTED), (401, Verdict.REJECTED), (403, Verdict.REJECTED), (404, Verdict.REJECTED),
    (409, Verdict.REJECTED), (410, Verdict.REJECTED), (413, Verdict.REJECTED), (422, Verdict.REJECTED),
    (301, Verdict.REJECTED), (302, Verdict.REJECTED), (307, Verdict.REJECTED),
])
def test_it_retries_only_what_can_succeed_on_retry(status, verdict):
    assert classify_status(status) is verdict


def test_backoff_grows_exponentially_within_equal_jitter_and_stops_at_the_cap():
    rng = random.Random(7)
    for attempt in range(1, 12):
        schedule = min(60_000, 200 * 2 ** (attempt - 1)) / 1000
        for _ in range(200):
            wait = backoff_seconds(attempt, 200, 60_000, rng)
            assert schedule / 2 <= wait <= schedule
    assert backoff_seconds(500, 200, 60_000) <= 60.0  # no overflow for absurd attempt numbers


def test_backoff_is_jittered():
    waits = {backoff_seconds(5, 200, 60_000) for _ in range(50)}
    assert len(waits) > 40


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    now = 1_800_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0)
    past = format_datetime(datetime.fromtimestamp(now - 30, UTC), usegmt=True)
    assert parse_retry_after(past, now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None


def test_retry_after_lengthens_the_wait_but_never_beyond_the_cap():
    rng = random.Random(1)
    assert retry_wait_seconds(1, 100, 10_000, 4.0, rng) == 4.0
    assert retry_wait_seconds(1, 100, 10_000, 3600.0, rng) == 10.0
    assert retry_wait_seconds(1, 100, 10_000, 0.0, rng) <= 0.1  # a shorter Retry-After does not rush us
    assert 0.05 <= retry_wait_seconds(1, 100, 10_000, None, rng) <= 0.1


def test_a_signature_verifies_and_anything_changed_does_not():
    body = b'{"id":"e1"}'
    header = signature_header("s3cret", body, timestamp=1_800_000_000)
    assert header == f"t=1800000000,v1={sign('s3cret', 1_800_000_000, body)}"
    assert verify("s3cret", header, body, now=1_800_000_010) == 1_800_000_000
    with pytest.raises(SignatureError, match="does not match"):
        verify("s3cret", header, body + b" ", now=1_800_000_010)
    with pytest.raises(SignatureError, match="does not match"):
        verify("other", header, body, now=1_800_000_010)
    forged = header.replace("t=1800000000", "t=1800000005")
    with pytest.raises(SignatureError, match="does not match"):
        verify("s3cret", forged, body, now=1_800_000_010)
    with pytest.raises(SignatureError, match="300 seconds"):
        verify("s3cret", header, body, now=1_800_000_301)
    with pytest.raises(SignatureError, match="missing"):
        verify("s3cret", None, body)
    with pytest.raises(SignatureError, match="t=<seconds>"):
        verify("s3cret", "v1=abc", body)


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    expected = hmac.new(b"key", b"1800000000.hello", hashlib.sha256).hexdigest()
    assert sign("key", 1_800_000_000, b"hello") == expected


def test_any_of_several_signatures_may_match():
    body = b"x"
    good = sign("s", 100, body)
    assert verify("s", f"t=100,v1=deadbeef,v1={good}", body, now=100) == 100


def test_specs_are_the_applications_subscriptions_or_all_in_gateway_mode():
    doc = make_config(bare=True, topics=["a.b"], applications=["one", "two"], subscriptions=[
        subscription("sub-1", "a.b", "one"), subscription("sub-2", "a.b", "two", state="paused"),
        subscription("sub-3", "a.b", "one", delivery={"mode": "structured", "max_in_flight": 1}),
    ])
    assert set(specs_from_config(doc, "one")) == {"sub-1", "sub-3"}
    specs = specs_from_config(doc, None)
    assert set(specs) == {"sub-1", "sub-2", "sub-3"}
    assert specs["sub-1"].active and not specs["sub-2"].active
    assert specs["sub-3"].mode == "structured" and specs["sub-3"].max_in_flight == 1
    assert specs["sub-1"].timeout_s == 5.0 and specs["sub-1"].secret == "whsec-sub-1-0123456789abcdef"


def test_a_subscription_whose_filters_do_not_compile_refuses_the_document():
    doc = make_config(bare=True, topics=["a.b"], applications=["one"], sealed=False,
                      subscriptions=[subscription("sub-1", "a.b", "one", filters=[{"sql": "1=1"}])])
    with pytest.raises(FilterError):
        specs_from_config(doc, None)


def test_a_new_group_starts_when_its_document_was_compiled_never_in_the_future():
    doc = make_config(generated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    at = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000)
    assert group_start(doc, now_ms=at + 10_000) == at
    assert group_start(doc, now_ms=at - 5) == at - 5
    assert group_start({"generated_at": None}, now_ms=at) == "$"


def test_the_receiver_example_in_the_docs_verifies_what_the_runtime_signs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "delivery.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(code.strip().splitlines()) <= 10
    namespace: dict = {}
    exec(compile(code, "docs/delivery.md", "exec"), namespace)  # noqa: S102 - our own documentation
    example = namespace["verify"]
    body = b'{"specversion":"1.0","id":"e1"}'
    header = signature_header("whsec-x", body)
    assert example("whsec-x", header, body)
    assert not example("whsec-x", header, body + b" ")
    assert not example("whsec-y", header, body)
    assert not example("whsec-x", signature_header("whsec-x", body, timestamp=1_000_000_000), body)
    assert not example("whsec-x", "garbage", body)
    assert example("whsec-x", f"{header},v1=deadbeef", body)


@pytest.mark.parametrize("event", [
    {"specversion": "1.0", "id": "e1", "source": "/shop", "type": "t", "datacontenttype": "application/json",
     "data": {"n": 1, "s": "é"}},
    {"specversion": "1.0", "id": "id with spaces", "source": "urn:x/\"quoted\"", "type": "100% sure",
     "time": "2026-11-28T14:30:00Z", "subject": "ünïcode ✓", "traceparent": "00-ab-cd-01"},
    {"specversion": "1.0", "id": "e3", "source": "/s", "type": "t", "flag": True, "count": 42, "meshroute": "r-1",
     "datacontenttype": "application/octet-stream", "data_base64": "AAECAwQ="},
    {"specversion": "1.0", "id": "e4", "source": "/s", "type": "t", "datacontenttype": "text/plain", "data": "hi"},
    {"specversion": "1.0", "id": "e5", "source": "/s", "type": "t", "data": "a JSON string"},
    {"specversion": "1.0", "id": "e6", "source": "/s", "type": "t", "datacontenttype": "text/plain; x=\"y\""},
    {"specversion": "1.0", "id": "e7", "source": "/s", "type": "t", "data": [1, {"a": None}]},
    {"specversion": "1.0", "id": "e8", "source": "/s", "type": "t", "datacontenttype": "application/xml",
     "data": "<a>1</a>"},
    {"specversion": "1.0", "id": "e 9", "source": "/s", "type": "t", "datacontenttype": "application/json",
     "data": {"k": "v"}},
])
def test_binary_pushes_are_exactly_what_the_codec_makes(event):
    import orjson

    from meshruntime.cloudevents import CloudEvent
    from meshruntime.delivery.worker import _request

    stored = orjson.dumps(event)
    _mode, headers, body = _request("binary", stored, orjson.loads(stored))
    expected_headers, expected_body = CloudEvent.from_structured(stored).to_binary()
    assert (headers, body) == (expected_headers, expected_body)


async def test_the_steps_of_a_delivered_attempt_are_those_add_and_add_common_write():
    import orjson

    from meshruntime.delivery.journal import JourneyWriter
    from meshruntime.journey import JourneyRecorder

    def written(journal: JourneyWriter) -> list[dict]:
        steps = [{**orjson.loads(step.step), "event": step.event_id} for step in journal._buffer]  # noqa: SLF001
        journal._buffer.clear()  # noqa: SLF001
        return steps

    journal = JourneyWriter(store=None, recorder=JourneyRecorder("rt-1"), delay=60)
    for latency in (0.125, 3.0, 1234.5):
        journal.add("e1", "attempt", subscription="sub-1", attempt=2, status=201, latency_ms=latency, error=None,
                    outcome="delivered")
        journal.add_common("e1", "acked", subscription="sub-1", attempts=2, status=201)
        expected = written(journal)
        journal.delivered("e1", "sub-1", 2, 201, latency)
        got = written(journal)
        assert [s.pop("at") for s in got] and [s.pop("at") for s in expected]
        assert got == expected
    journal._flushing.cancel()  # noqa: SLF001 - nothing to write it to
