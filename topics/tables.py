from django.utils.html import format_html
from django.utils.safestring import mark_safe

from meshadmin.tables import Column

_ACTIVE = mark_safe('<span class="badge text-bg-success">active</span>')  # noqa: S308 - a constant


def lifecycle_badge(topic) -> str:
    if topic.lifecycle == "deprecated":
        sunset = f" · {topic.sunset:%Y-%m-%d}" if topic.sunset else ""
        return format_html('<span class="badge text-bg-warning">deprecated{}</span>', sunset)
    return _ACTIVE


TOPIC_COLUMNS = [
    Column("name", linkify=True),
    Column("team", linkify=True, order_by="team__name"),
    Column("store", order_by="store__name"),
    Column("lifecycle", html=lifecycle_badge, order_by="lifecycle"),
    Column("tags", accessor="tags", order_by=None),
    Column("updated"),
]

EVENTSTORE_COLUMNS = [
    Column("name", linkify=True),
    Column("kind"),
    Column("connection"),
    Column("description", order_by=None),
]
