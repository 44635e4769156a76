"""The tabs ``tracing`` adds to other apps' object pages (see ``meshadmin.tabs``).

Each feature adds its tab here, in one list, so the order of the tabs is decided in one place.
"""

from __future__ import annotations

from meshadmin import tabs

TABS: list[tuple[type, tabs.ObjectTab]] = []


def register_all() -> None:
    for model, tab in TABS:
        tabs.register(model, tab)
