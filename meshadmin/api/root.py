"""``/api/v1/``: the API's own index, every endpoint that takes no id, found in the URLconf.

Nothing to keep up to date: an app that adds a router or a view under ``/api/v1/`` appears here.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, get_resolver, reverse
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

NAMESPACE = "api"


def _names(patterns) -> list[str]:
    names = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            names.extend(_names(entry.url_patterns))
        elif isinstance(entry, URLPattern) and entry.name and "<" not in str(entry.pattern) \
                and "(?P" not in str(entry.pattern) and str(entry.pattern) not in ("", "^$"):
            names.append(entry.name)
    return names


def endpoints() -> dict[str, str]:
    """{"topics": "/api/v1/topics/", "config-versions/push": "/api/v1/config-versions/push/", ...}:
    each endpoint by its path under the root, as DRF's own root view names them."""
    _prefix, resolver = get_resolver().namespace_dict[NAMESPACE]
    root = reverse(f"{NAMESPACE}:root")
    found = {}
    for name in _names(resolver.url_patterns):
        url = reverse(f"{NAMESPACE}:{name}")
        found[url.removeprefix(root).strip("/")] = url
    return dict(sorted(found.items()))


class APIRootView(APIView):
    """Every endpoint of the API that takes no id (each has its own detail URLs under it)."""

    @extend_schema(responses={200: {"type": "object", "additionalProperties": {"type": "string", "format": "uri"},
                                    "description": "Each endpoint's URL, by its path under the root."}})
    def get(self, request):
        return Response({name: request.build_absolute_uri(url) for name, url in endpoints().items()})
