from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from meshadmin.api.views import MeshModelViewSet
from meshadmin.querysets import CHANGE

from ..filtersets import AccessRuleFilterSet, ApplicationFilterSet, ApplicationKeyFilterSet, RoutingRuleFilterSet
from ..models import AccessRule, Application, ApplicationKey, RoutingRule
from ..simulator import simulate
from .serializers import (
    AccessRuleSerializer,
    ApplicationKeySerializer,
    ApplicationSerializer,
    RoutingRuleSerializer,
    SimulationQuerySerializer,
    SimulationSerializer,
)


class ApplicationViewSet(MeshModelViewSet):
    queryset = Application.objects.select_related("team").order_by("name")
    serializer_class = ApplicationSerializer
    filterset_class = ApplicationFilterSet


class ApplicationKeyViewSet(MeshModelViewSet):
    """Keys of your teams' applications. Creating one answers with ``key`` once; revoke with
    ``POST …/revoke/``."""

    queryset = ApplicationKey.objects.select_related("application").order_by("-created")
    serializer_class = ApplicationKeySerializer
    filterset_class = ApplicationKeyFilterSet

    def perform_create(self, serializer):
        if not Application.can_create(self.request.user):
            raise PermissionDenied("You may not create application keys.")
        serializer.save()

    @extend_schema(request=None, responses=ApplicationKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        key = get_object_or_404(ApplicationKey.objects.restrict(request.user, CHANGE), pk=pk)
        key.revoke()
        return Response(self.get_serializer(key).data)


class AccessRuleViewSet(MeshModelViewSet):
    queryset = AccessRule.objects.select_related("team", "principal_application", "principal_team").order_by("pk")
    serializer_class = AccessRuleSerializer
    filterset_class = AccessRuleFilterSet


class RoutingRuleViewSet(MeshModelViewSet):
    queryset = RoutingRule.objects.select_related("team").prefetch_related("targets").order_by("order", "pk")
    serializer_class = RoutingRuleSerializer
    filterset_class = RoutingRuleFilterSet


class SimulatorView(APIView):
    """May this application publish (or subscribe) to this topic? With the deciding rule and every
    rule that matched, from the rules the runtimes would receive if published now."""

    @extend_schema(parameters=[SimulationQuerySerializer], responses=SimulationSerializer)
    def get(self, request):
        query = SimulationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        return Response(simulate(data["application"].name, data["topic"], data["action"]).as_dict())
