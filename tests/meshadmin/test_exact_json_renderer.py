"""``ExactJSONRenderer``: the answers of the views that embed stored JSON are written as DRF writes
every other answer, but for the fragments, which are embedded as they are."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import orjson
from django.utils.translation import gettext_lazy
from rest_framework.renderers import JSONRenderer

from meshadmin.api.renderers import ExactJSONRenderer

ANSWER = {
    "at": datetime.datetime(2026, 5, 1, 12, 34, 56, 789123, tzinfo=datetime.UTC),
    "day": datetime.date(2026, 5, 1), "time": datetime.time(12, 34, 56, 789123),
    "amount": Decimal("12.50"), "label": gettext_lazy("Not found."), "uuid": uuid.UUID(int=7),
    "counts": {1: "one"}, "text": "é \u2028 \u2029 \"quoted\"", "empty": [[], {}], "n": None, "ok": True,
    "rate": 0.1,
}


def test_it_writes_what_drf_writes_compact_and_indented():
    for media_type in ("application/json", "application/json; indent=2"):
        assert ExactJSONRenderer().render(ANSWER, media_type) == JSONRenderer().render(ANSWER, media_type)


def test_it_embeds_a_fragment_as_it_is_and_escapes_what_javascript_refuses_around_it():
    stored = '{"b":0.1000000000000000055511151231257827,"a":1E400,"s":"\u2028"}'.encode()
    written = ExactJSONRenderer().render({"event": orjson.Fragment(stored)})
    assert written == b'{"event":' + stored.replace("\u2028".encode(), b"\\u2028") + b"}"


def test_it_writes_nothing_for_no_data():
    assert ExactJSONRenderer().render(None) == b""
