"""How the pages show times, durations, counts and JSON text: one format for each, used by the
templates' filters (``meshadmin.templatetags.mesh``) and the list pages' columns (``meshadmin.tables``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils.html import format_html
from django.utils.safestring import SafeString

# A piece of JSON text: a string (escapes and all), a bracket, a comma, a colon, or a number or literal.
_JSON_PIECE = re.compile(r'"(?:[^"\\]+|\\.)*"|[][{},:]|[^][{},:"\s]+')
_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1))


def timestamp(value: datetime | None) -> SafeString | str:
    """``2026-05-01 12:34:56 UTC`` in a ``<time>`` whose ``datetime`` and title are the ISO value."""
    if value is None or value == "":
        return ""
    utc = value.astimezone(UTC)
    iso = utc.isoformat(timespec="seconds")
    return format_html('<time datetime="{}" title="{}">{}</time>', iso, iso, utc.strftime("%Y-%m-%d %H:%M:%S UTC"))


def duration(seconds: int | float | None) -> str:
    """Seconds in words, every unit that is not zero: ``604800`` is ``7 days``, ``5400`` is
    ``1 hour 30 minutes``."""
    if seconds is None or seconds == "":
        return ""
    remaining = int(seconds)
    if remaining == 0:
        return "0 seconds"
    parts = []
    for name, size in _UNITS:
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount} {name}{'' if amount == 1 else 's'}")
    return " ".join(parts)


def count(value: int | float | None) -> str:
    """A counter's value: whole numbers without ``.0`` and with thousands separators (counters
    reach the portal as floats from Prometheus' client), fractions to three places."""
    if value is None or value == "":
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3f}".rstrip("0")
    return intcomma(int(value))


def counter_label(name: str) -> str:
    """A counter's name as a label: ``events_published`` is ``Events published``."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def indented_json(text: str) -> str:
    """The valid JSON ``text`` indented by two spaces, as ``json.dumps(..., indent=2)`` lays it out,
    each number, string and literal kept as written: parsing and writing it again would round the
    numbers a double cannot hold (``12345678901234567890123``, ``0.1000000000000000055511151231257827``),
    and events are shown as they were published. (static/tracing/event_detail.js does the same.)"""
    out: list[str] = []
    depth = 0
    opened = False  # the last piece opened an object or array: its first member starts a line
    for piece in _JSON_PIECE.findall(text):
        if piece in ("}", "]"):
            depth -= 1
            out.append(piece if opened else "\n" + "  " * depth + piece)
            opened = False
            continue
        if opened:
            out.append("\n" + "  " * depth)
            opened = False
        if piece == ",":
            out.append(",\n" + "  " * depth)
        elif piece == ":":
            out.append(": ")
        else:
            out.append(piece)
            if piece in ("{", "["):
                depth += 1
                opened = True
    return "".join(out)
