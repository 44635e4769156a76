"""Tabs that apps add to other apps' object pages (NetBox's ``ViewTab``), without an import back.

An object page shows its own tabs (Overview, History, and those its template adds) and every tab
registered for its model. An app that observes another's objects — ``tracing`` adds "Live",
"Events" and "Traffic" to a topic — registers its tabs in its ``AppConfig.ready()``, so the
catalog never imports the apps that look at it (docs/architecture.md, "Layout").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from django.db import models
from django.urls import reverse

__all__ = ["ObjectAction", "ObjectTab", "actions_for", "register", "register_action", "tabs_for"]


@dataclass(frozen=True)
class ObjectTab:
    name: str  #: the page's ``tab`` context value, and ``data-testid="tab-<name>"``
    label: str
    url_name: str  #: reversed with the object's pk
    weight: int = 100  #: lighter tabs come first
    #: whether ``user`` sees the tab on ``obj`` (the page behind it checks again)
    visible: Callable[[object, models.Model], bool] | None = None


@dataclass(frozen=True)
class ObjectAction:
    """A button in the header of a model's object pages (tracing's "Send test event" on a topic)."""

    name: str  #: ``data-testid="action-<name>"``
    label: str
    url_name: str  #: reversed with the object's pk
    weight: int = 100
    #: whether ``user`` sees the button on ``obj`` (the page behind it checks again)
    visible: Callable[[object, models.Model], bool] | None = None


_registry: dict[str, list[ObjectTab]] = defaultdict(list)
_actions: dict[str, list[ObjectAction]] = defaultdict(list)


def register(model: type[models.Model], tab: ObjectTab) -> None:
    tabs = _registry[model._meta.label_lower]
    if any(existing.name == tab.name for existing in tabs):
        raise ValueError(f"{model._meta.label} already has a tab named {tab.name!r}")
    tabs.append(tab)
    tabs.sort(key=lambda t: (t.weight, t.name))


def tabs_for(obj: models.Model, user) -> list[tuple[ObjectTab, str]]:
    """The registered tabs ``user`` sees on ``obj``'s pages, with their URLs, in order."""
    return [
        (tab, reverse(tab.url_name, args=[obj.pk]))
        for tab in _registry.get(obj._meta.label_lower, ())
        if tab.visible is None or tab.visible(user, obj)
    ]


def register_action(model: type[models.Model], action: ObjectAction) -> None:
    actions = _actions[model._meta.label_lower]
    if any(existing.name == action.name for existing in actions):
        raise ValueError(f"{model._meta.label} already has an action named {action.name!r}")
    actions.append(action)
    actions.sort(key=lambda a: (a.weight, a.name))


def actions_for(obj: models.Model, user) -> list[tuple[ObjectAction, str]]:
    """The registered header buttons ``user`` sees on ``obj``'s pages, with their URLs, in order."""
    return [
        (action, reverse(action.url_name, args=[obj.pk]))
        for action in _actions.get(obj._meta.label_lower, ())
        if action.visible is None or action.visible(user, obj)
    ]
