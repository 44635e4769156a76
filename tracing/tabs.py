"""The tabs ``tracing`` adds to other apps' object pages (see ``meshadmin.tabs``).

Each feature adds its tab here, in one list, so the order of the tabs is decided in one place;
header buttons (``ObjectAction``) likewise in ``ACTIONS``.
"""

from __future__ import annotations

from governance.models import Application
from meshadmin import tabs
from rollout.models import Runtime
from subscriptions.models import Subscription
from topics.models import Topic

from .event_views import may_send

TABS: list[tuple[type, tabs.ObjectTab]] = [
    # events as they happen, what the store holds, charts from Prometheus, traces from SkyWalking
    (Topic, tabs.ObjectTab("live", "Live", "tracing:topic_live", weight=10)),
    (Topic, tabs.ObjectTab("events", "Events", "tracing:topic_events", weight=20)),
    (Topic, tabs.ObjectTab("traffic", "Traffic", "tracing:topic_traffic", weight=30)),
    (Topic, tabs.ObjectTab("traces", "Traces", "tracing:topic_traces", weight=40)),
    (Subscription, tabs.ObjectTab("live", "Live", "tracing:subscription_live", weight=10)),
    (Subscription, tabs.ObjectTab("metrics", "Metrics", "tracing:subscription_metrics", weight=30)),
    (Application, tabs.ObjectTab("traffic", "Traffic", "tracing:application_traffic", weight=30)),
    (Application, tabs.ObjectTab("traces", "Traces", "tracing:application_traces", weight=40)),
    (Application, tabs.ObjectTab("refused", "Refused", "tracing:application_refused", weight=50)),
    (Runtime, tabs.ObjectTab("metrics", "Metrics", "tracing:runtime_metrics", weight=30)),
]

ACTIONS: list[tuple[type, tabs.ObjectAction]] = [
    (Topic, tabs.ObjectAction("test-event", "Send test event", "tracing:test_event", visible=may_send)),
]


def register_all() -> None:
    for model, tab in TABS:
        tabs.register(model, tab)
    for model, action in ACTIONS:
        tabs.register_action(model, action)
