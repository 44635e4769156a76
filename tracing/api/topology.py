"""``GET /api/v1/topology/``: the live topology's nodes and edges with their rates (tracing.topology)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from ..topology import Filters, topology
from .serializers import ErrorSerializer, TopologyFiltersSerializer, TopologySerializer


class TopologyAPIView(APIView):
    @extend_schema(
        operation_id="topology",
        parameters=[TopologyFiltersSerializer],
        responses={
            200: TopologySerializer,
            400: OpenApiResponse(description="A filter that is not a team, topic prefix or application name; "
                                             "the body names it."),
            401: OpenApiResponse(ErrorSerializer, description="Not signed in (no or a bad token)."),
        },
    )
    def get(self, request):
        """Applications → topics → subscriptions → their webhooks' hosts, and routing rules as topic →
        topic edges: what you may see (subscriptions as on their pages), each edge with its rate and
        share of errors from Prometheus. Without Prometheus the structure is all there,
        ``rates_available`` is false and ``rates_reason`` says why. One Prometheus query per
        refresh serves every viewer: poll no faster than ``refresh_seconds``."""
        params = TopologyFiltersSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(topology(request.user, Filters(**params.validated_data)))
