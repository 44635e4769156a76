"""The tabs ``tracing`` adds to other apps' object pages (see ``meshadmin.tabs``).

Each feature adds its tab here, in one list, so the order of the tabs is decided in one place.
"""

from __future__ import annotations

from governance.models import Application
from meshadmin import tabs
from rollout.models import Runtime
from subscriptions.models import Subscription
from topics.models import Topic

TABS: list[tuple[type, tabs.ObjectTab]] = [
    # charts from Prometheus (tracing.metrics_views); whoever sees the object sees its tab
    (Topic, tabs.ObjectTab("traffic", "Traffic", "tracing:topic_traffic", weight=300)),
    (Subscription, tabs.ObjectTab("metrics", "Metrics", "tracing:subscription_metrics", weight=300)),
    (Application, tabs.ObjectTab("traffic", "Traffic", "tracing:application_traffic", weight=300)),
    (Runtime, tabs.ObjectTab("metrics", "Metrics", "tracing:runtime_metrics", weight=300)),
]


def register_all() -> None:
    for model, tab in TABS:
        tabs.register(model, tab)
