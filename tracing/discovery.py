"""Prometheus HTTP service discovery: the runtimes (and the portal) as ``http_sd_configs`` targets.

Each runtime's heartbeats carry the URL of its ``/metrics`` (``rollout.registry``); every runtime
that is not gone is a target, with labels that say what it is. A runtime that stops leaves the
list once the registry marks it gone (``MESH_RUNTIME_GONE_SECONDS`` of silence): until then
Prometheus records it as down (``up == 0``), which is what an operator wants to see.

The labels are prefixed ``mesh_`` because the runtimes' own series already have an
``application`` label (the publishing application); a target label of the same name would
override it. ``mesh_kind`` is ``sidecar``, ``gateway`` or ``portal``.

The format: https://prometheus.io/docs/prometheus/latest/http_sd/ — a JSON list of
``{"targets": ["host:port"], "labels": {…}}``; ``__scheme__`` and ``__metrics_path__`` carry the
rest of the URL.
"""

from __future__ import annotations

import importlib.metadata
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from rollout.models import Runtime

__all__ = ["KINDS", "portal_target", "runtime_targets", "target"]

KINDS = ("runtime", "portal")


def portal_version() -> str:
    try:
        return importlib.metadata.version("meshadmin")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def target(url: str, labels: dict[str, str]) -> dict | None:
    """One target group for ``url``, or None when it is not an http(s) URL with a host."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    address = f"{host}:{port or (443 if parts.scheme == 'https' else 80)}"
    path = parts.path or "/metrics"
    if parts.query:
        path += "?" + parts.query  # Prometheus takes query parameters with the path as well
    return {"targets": [address], "labels": {"__scheme__": parts.scheme, "__metrics_path__": path, **labels}}


def runtime_targets(user) -> list[dict]:
    """Every runtime ``user`` may see that is not gone and told where it is scraped."""
    cutoff = timezone.now() - timedelta(seconds=settings.MESH_RUNTIME_GONE_SECONDS)
    runtimes = (Runtime.objects.restrict(user).filter(last_seen__gt=cutoff).exclude(metrics_url="")
                .order_by("runtime_id"))
    groups = []
    for runtime in runtimes:
        group = target(runtime.metrics_url, {
            "mesh_kind": "sidecar" if runtime.application else "gateway",
            "mesh_runtime_id": runtime.runtime_id,
            "mesh_application": runtime.application,
            "mesh_software_version": runtime.software_version,
        })
        if group is not None:
            groups.append(group)
    return groups


def portal_target(request) -> dict | None:
    """The portal's own ``/metrics``: ``MESH_PORTAL_METRICS_URL``, else where Prometheus reached
    the discovery endpoint (it can reach ``/metrics`` there too)."""
    url = settings.MESH_PORTAL_METRICS_URL or request.build_absolute_uri("/metrics")
    return target(url, {"mesh_kind": "portal", "mesh_software_version": portal_version()})
