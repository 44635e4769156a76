"""Links the live views put on events."""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse


def journey_url_template() -> str:
    """The journey page of an event, with ``__id__`` where the id goes (``/events/<id>/``)."""
    try:
        return reverse("tracing:journey", args=["__id__"])
    except NoReverseMatch:  # the journey page is not installed (yet): its documented path
        return "/events/__id__/"
