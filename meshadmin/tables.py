"""Columns of the generic list pages: what a row shows, how it links, how it sorts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.template.loader import render_to_string
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from meshadmin.formatting import timestamp

EMPTY = mark_safe('<span class="text-body-tertiary">—</span>')  # noqa: S308 - a constant


@dataclass(frozen=True)
class Column:
    name: str
    label: str | None = None
    accessor: str | Callable[[Any], Any] | None = None  # dotted path or callable; default: name
    linkify: bool = False  # link to the value's (or the row's) get_absolute_url
    order_by: str | None = ""  # "" = sort by ``name``; None = not sortable
    template: str | None = None  # a template rendering ``record`` and ``value`` (slow: for rare cells)
    html: Callable[[Any], str] | None = None  # renders the record's cell; the fast way to custom cells
    badge: bool = False

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @property
    def sort_key(self) -> str | None:
        if self.order_by is None or self.template or self.html:
            return self.order_by or None
        return self.order_by or self.name

    def value(self, record) -> Any:
        if callable(self.accessor):
            return self.accessor(record)
        value = record
        for part in (self.accessor or self.name).split("."):
            value = getattr(value, part, None)
            if value is None:
                return None
            if callable(value) and hasattr(value, "all"):  # a related manager
                value = list(value.all())
        display = getattr(record, f"get_{self.name}_display", None)
        if display and not self.accessor:
            return display()
        return value

    def render(self, record) -> str:
        if self.html is not None:
            return self.html(record)
        value = self.value(record)
        if self.template:
            return render_to_string(self.template, {"record": record, "value": value})
        if isinstance(value, list):
            return format_html_join(
                " ", '<span class="badge text-bg-light border">{}</span>', ((v,) for v in value)
            )
        if value is None or value == "":
            return EMPTY
        if isinstance(value, datetime):
            return timestamp(value)
        if isinstance(value, bool):
            return format_html('<span class="badge text-bg-{}">{}</span>',
                               "success" if value else "secondary", "yes" if value else "no")
        if self.linkify:
            target = value if hasattr(value, "get_absolute_url") else record
            return format_html('<a href="{}">{}</a>', target.get_absolute_url(), value)
        if self.badge:
            return format_html('<span class="badge text-bg-secondary">{}</span>', value)
        return format_html("{}", value)


_ACTION_COLOURS = {"create": "success", "update": "primary", "delete": "danger"}


def audit_action_badge(entry) -> str:
    return format_html('<span class="badge text-bg-{}">{}</span>', _ACTION_COLOURS.get(entry.action, "secondary"),
                       entry.get_action_display())
