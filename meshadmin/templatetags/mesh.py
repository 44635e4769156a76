from __future__ import annotations

import json

import markdown as markdown_lib
import nh3
from django import template
from django.utils.safestring import mark_safe

from meshadmin import formatting

register = template.Library()
register.filter("timestamp", formatting.timestamp)
register.filter("duration", formatting.duration)
register.filter("count", formatting.count)
register.filter("counter_label", formatting.counter_label)

_ALLOWED_TAGS = {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "a", "blockquote",
                 "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "hr"}


@register.filter
def markdown(text: str | None) -> str:
    """Markdown rendered, then sanitised (no scripts, no event handlers, no javascript: links)."""
    if not text:
        return ""
    html = markdown_lib.markdown(text, extensions=["fenced_code", "tables"])
    return mark_safe(nh3.clean(html, tags=_ALLOWED_TAGS, link_rel="noopener noreferrer"))  # noqa: S308


@register.filter
def pretty_json(value) -> str:
    if value in (None, ""):
        return ""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.simple_tag(takes_context=True)
def sort_link(context, column) -> str:
    """The query string that sorts by ``column``, toggling the direction."""
    query = context["request"].GET.copy()
    current = context.get("sort", "")
    query["sort"] = f"-{column.sort_key}" if current == column.sort_key else column.sort_key
    query.pop("page", None)
    return query.urlencode()


@register.simple_tag(takes_context=True)
def page_link(context, number) -> str:
    query = context["request"].GET.copy()
    query["page"] = number
    return query.urlencode()
