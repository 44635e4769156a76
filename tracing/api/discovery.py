"""``GET /api/v1/prometheus/targets/``: Prometheus's HTTP service discovery (tracing.discovery)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from ..discovery import KINDS, portal_target, runtime_targets

#: The http_sd_configs list: each entry where to scrape, and the labels every series gets.
TARGET_GROUPS = inline_serializer("PrometheusTargetGroup", many=True, fields={
    "targets": serializers.ListField(child=serializers.CharField(), help_text="host:port to scrape"),
    "labels": serializers.DictField(child=serializers.CharField(),
                                    help_text="__metrics_path__, __scheme__, application, runtime, …"),
})


class PrometheusTargetsView(APIView):
    """Every live runtime's ``/metrics`` and the portal's own, as ``http_sd_configs`` wants them.

    Prometheus authenticates with an API token (``authorization: {type: Bearer,
    credentials_file: …}`` in its configuration); a read-only token is enough. ``kind=runtime``
    or ``kind=portal`` lists only those, so that one scrape job can send the token to the portal
    without sending it to every runtime.
    """

    @extend_schema(
        parameters=[OpenApiParameter("kind", OpenApiTypes.STR, enum=list(KINDS),
                                     description="only the runtimes, or only the portal")],
        responses={200: TARGET_GROUPS},
    )
    def get(self, request):
        kind = request.query_params.get("kind")
        if kind is not None and kind not in KINDS:
            raise ValidationError({"kind": [f"must be one of {', '.join(KINDS)}, not {kind!r}"]})
        groups = []
        if kind in (None, "runtime"):
            groups.extend(runtime_targets(request.user))
        if kind in (None, "portal"):
            portal = portal_target(request)
            if portal is not None:
                groups.append(portal)
        return Response(groups)
