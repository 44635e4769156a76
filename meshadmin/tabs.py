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
from typing import TypeVar

from django.db import models
from django.urls import reverse

__all__ = ["ObjectAction", "ObjectTab", "actions_for", "register", "register_action", "tabs_for"]


@dataclass(frozen=True)
class _ObjectLink:
    name: str
    label: str
    url_name: str  #: reversed with the object's pk
    weight: int = 100  #: lighter ones come first
    #: whether ``user`` sees it on ``obj`` (the page behind it checks again)
    visible: Callable[[object, models.Model], bool] | None = None


@dataclass(frozen=True)
class ObjectTab(_ObjectLink):
    """A tab of a model's object pages; ``name`` is the page's ``tab`` context value, and
    ``data-testid="tab-<name>"``."""


@dataclass(frozen=True)
class ObjectAction(_ObjectLink):
    """A button in the header of a model's object pages (tracing's "Send test event" on a topic);
    ``data-testid="action-<name>"``."""


_Link = TypeVar("_Link", bound=_ObjectLink)

_registry: dict[str, list[ObjectTab]] = defaultdict(list)
_actions: dict[str, list[ObjectAction]] = defaultdict(list)


def _add(links_by_model: dict[str, list[_Link]], model: type[models.Model], link: _Link, what: str) -> None:
    links = links_by_model[model._meta.label_lower]
    if any(existing.name == link.name for existing in links):
        raise ValueError(f"{model._meta.label} already has {what} named {link.name!r}")
    links.append(link)
    links.sort(key=lambda each: (each.weight, each.name))


def _shown(links_by_model: dict[str, list[_Link]], obj: models.Model, user) -> list[tuple[_Link, str]]:
    return [
        (link, reverse(link.url_name, args=[obj.pk]))
        for link in links_by_model.get(obj._meta.label_lower, ())
        if link.visible is None or link.visible(user, obj)
    ]


def register(model: type[models.Model], tab: ObjectTab) -> None:
    _add(_registry, model, tab, "a tab")


def tabs_for(obj: models.Model, user) -> list[tuple[ObjectTab, str]]:
    """The registered tabs ``user`` sees on ``obj``'s pages, with their URLs, in order."""
    return _shown(_registry, obj, user)


def register_action(model: type[models.Model], action: ObjectAction) -> None:
    _add(_actions, model, action, "an action")


def actions_for(obj: models.Model, user) -> list[tuple[ObjectAction, str]]:
    """The registered header buttons ``user`` sees on ``obj``'s pages, with their URLs, in order."""
    return _shown(_actions, obj, user)
