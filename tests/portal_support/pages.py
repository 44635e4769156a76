"""The portal's pages as the resolver lists them, made concrete with objects a persona may see.

A page added later (a new app, a new tab) is found without touching the tests that walk pages:
routes come from ``get_resolver()``, and a route's ``<pk>`` from the model its view serves (the
view's ``queryset``, else the model its URL name starts with: ``rollout:runtime`` → Runtime).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from meshadmin.models import APIToken
from rollout import push
from rollout.models import ConfigVersion, Runtime
from subscriptions.models import SubscriptionChange
from tests.portal_support.mesh import build_mesh

_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")

#: Not pages: the API (JSON; its browsable docs are listed on their own), files, signing out.
NOT_PAGES = ("api/v1/", "api/schema/", "static/", "logout/", "healthz")


def _plain(piece: str) -> str:
    """A regex route piece (DRF's routers) in the ``<name>`` form of path routes."""
    return _REGEX_GROUP.sub(r"<\1>", piece.lstrip("^").rstrip("$"))


def routes(patterns=None, prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    """(route, ``namespace:name``) of every URL pattern but Django's admin."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            if str(entry.pattern).startswith("admin/"):
                continue  # Django's admin: walked on its own
            inner = ":".join(filter(None, [namespace, entry.namespace]))
            yield from routes(entry.url_patterns, prefix + _plain(str(entry.pattern)), inner)
        elif isinstance(entry, URLPattern):
            yield prefix + _plain(str(entry.pattern)), ":".join(filter(None, [namespace, entry.name or ""]))


def route_model(route: str, name: str, callback=None):
    """The model whose objects fill a route's ``<pk>``, or None."""
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    queryset = getattr(view_class, "queryset", None)
    if queryset is not None:
        return queryset.model
    app_label, _, url_name = name.rpartition(":")
    try:
        return apps.get_model(app_label.split(":")[-1], url_name.split("_")[0])
    except (LookupError, ValueError):
        return None


def page_urls(user) -> list[str]:
    """One URL per page route, with an object ``user`` may see where the route takes one (the
    newest; any object when the user sees none, for the page that says so). Workflow steps
    (``<slug:step>``) are POST-only and left out."""
    resolver = get_resolver()
    urls = []
    for route, name in sorted(set(routes())):
        if route.startswith(NOT_PAGES) or "<slug:step>" in route or "(" in route or "<format>" in route:
            continue
        pk = None
        if "<" in route:
            probe = "/" + _PARAM.sub("1", route)
            match = resolver.resolve(probe)
            model = route_model(route, name, match.func)
            if model is not None:
                manager = model._base_manager
                visible = manager.all()
                restrict = getattr(visible, "restrict", None)
                if restrict is not None:
                    visible = restrict(user)
                pk = visible.order_by("-pk").values_list("pk", flat=True).first() or \
                    manager.order_by("-pk").values_list("pk", flat=True).first()
        urls.append("/" + _PARAM.sub(lambda m, pk=pk: str(pk or 1) if m.group(1) in ("int", None) else "x", route))
    return urls


@pytest.fixture
def mesh_world(personas, mesh_redis):
    """A seeded mesh with an object of every model a page shows: ``build_mesh()``, an API token,
    a requested subscription change, a config version and a runtime that reports counters."""
    mesh = build_mesh()
    token = APIToken(user=personas["alice"], description="deploys")
    token.generate()
    token.save()
    subscription = mesh.subs["active"]
    SubscriptionChange.objects.create(subscription=subscription, before={"webhook_url": subscription.webhook_url},
                                      after={"webhook_url": "http://shipping.internal/v2"})
    push.push(force=True)
    Runtime.objects.create(runtime_id="billing-7f9c-1", application="billing", host="billing-pod-1",
                           config_version=ConfigVersion.objects.latest("version").version,
                           counters={"events_published": 1234.0, "delivery_attempts": 17, "events_refused": 2.0})
    return mesh
