"""The tabs ``tracing`` adds to other apps' object pages (see ``meshadmin.tabs``).

Each feature adds its tab here, in one list, so the order of the tabs is decided in one place.
"""

from __future__ import annotations

from governance.models import Application
from meshadmin import tabs
from subscriptions.models import Subscription
from topics.models import Topic

TABS: list[tuple[type, tabs.ObjectTab]] = [
    (Topic, tabs.ObjectTab("live", "Live", "tracing:topic_live", weight=10)),
    (Subscription, tabs.ObjectTab("live", "Live", "tracing:subscription_live", weight=10)),
    (Application, tabs.ObjectTab("refused", "Refused", "tracing:application_refused", weight=50)),
]


def register_all() -> None:
    for model, tab in TABS:
        tabs.register(model, tab)
