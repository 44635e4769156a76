"""Template filters of the event pages: times in milliseconds, durations, links to rules."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.urls import NoReverseMatch, reverse

register = template.Library()

_RULE_PAGES = {"rule-": "governance:accessrule", "route-": "governance:routingrule"}


@register.filter
def epoch_ms(value) -> str:
    """Epoch milliseconds as ``2026-12-06 05:14:03.127`` (UTC)."""
    if not isinstance(value, int):
        return ""
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@register.filter
def elapsed(ms) -> str:
    """A duration in milliseconds, readable: ``4 ms``, ``1.25 s``, ``3 min 5 s``."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms:g} ms"
    if ms < 60_000:
        return f"{ms / 1000:.3g} s"
    minutes, seconds = divmod(int(ms // 1000), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


@register.filter
def rule_url(rule_id) -> str:
    """The page of an access rule (``rule-7``) or routing rule (``route-3``); empty otherwise."""
    if not isinstance(rule_id, str):
        return ""
    for prefix, name in _RULE_PAGES.items():
        number = rule_id.removeprefix(prefix)
        if number != rule_id and number.isdigit():
            try:
                return reverse(name, args=[int(number)])
            except NoReverseMatch:
                return ""
    return ""


@register.filter
def step_label(name) -> str:
    """A step or outcome as people write it: ``dead_lettered`` is "dead-lettered"."""
    return str(name).replace("_", "-")
