"""Factories the portal tests share.

Test data is made with bulk_create, which sends no signal: setting up a test writes no audit
entry, so a test can count the entries its own requests write.
"""

from __future__ import annotations

import itertools

from governance.models import AccessRule, Application
from subscriptions.models import Subscription
from topics.models import Topic

_numbers = itertools.count(1)


def make_app(team, name: str | None = None) -> Application:
    [app] = Application.objects.bulk_create([Application(name=name or f"{team.slug}-app-{next(_numbers)}",
                                                         team=team)])
    return app


def make_topic(team, store, name: str | None = None, **extra) -> Topic:
    [topic] = Topic.objects.bulk_create([Topic(name=name or f"{team.slug}.topic-{next(_numbers)}", team=team,
                                               store=store, **extra)])
    return topic


def make_subscription(application, topic, state: str = Subscription.REQUESTED, **extra) -> Subscription:
    return Subscription.objects.create(application=application, topic=topic, state=state,
                                       webhook_url="https://hooks.example.com/events", **extra)


def make_rule(team, pattern: str, *, application=None, principal_team=None, everyone=False,
              publish=False, subscribe=False, effect=AccessRule.ALLOW) -> AccessRule:
    kind = AccessRule.EVERYONE if everyone else AccessRule.TEAM if principal_team else AccessRule.APPLICATION
    return AccessRule.objects.create(team=team, principal_kind=kind, principal_application=application,
                                     principal_team=principal_team, topic_pattern=pattern, publish=publish,
                                     subscribe=subscribe, effect=effect)
