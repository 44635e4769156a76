"""Factories the portal tests share.

Test data is made with bulk_create, which sends no signal: setting up a test writes no audit
entry, so a test can count the entries its own requests write.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from governance.models import AccessRule, Application, ApplicationKey
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


def make_key(application, **fields) -> ApplicationKey:
    """A key of ``application``, saved with signals as the portal saves it; a test that publishes
    with the plain key takes ``make_app_with_key``, which keeps it."""
    key = ApplicationKey(application=application, **fields)
    key.generate()
    key.save()
    return key


@dataclass
class AppWithKey:
    """An application, one key of it, the plain key (the portal shows it once: a test keeps it to
    publish with) and the rules that allow and deny it publishing."""

    application: Application
    key: ApplicationKey
    plain_key: str
    allow_rules: list[AccessRule]
    deny_rules: list[AccessRule]


def make_app_with_key(team, name: str, *, may_publish: Iterable[str] = (), may_not_publish: Iterable[str] = (),
                      **key_fields) -> AppWithKey:
    """Application ``name`` of ``team``, with a key and its team's rules that let it publish to the
    ``may_publish`` patterns and not to the ``may_not_publish`` ones (deny beats allow). Saved
    with signals, unlike make_app, as the portal saves them: the audit log and the push's list of
    changes see all three."""
    application = Application.objects.create(name=name, team=team)
    key = ApplicationKey(application=application, **key_fields)
    plain_key = key.generate()
    key.save()
    allow = [make_rule(team, pattern, application=application, publish=True) for pattern in may_publish]
    deny = [make_rule(team, pattern, application=application, publish=True, effect=AccessRule.DENY)
            for pattern in may_not_publish]
    return AppWithKey(application, key, plain_key, allow, deny)
