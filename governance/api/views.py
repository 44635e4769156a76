from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from meshadmin.api.serializers import StepSerializer
from meshadmin.api.views import MeshModelViewSet
from meshadmin.querysets import CHANGE
from meshadmin.workflow import TransitionRefused

from ..filtersets import AccessRuleFilterSet, ApplicationFilterSet, ApplicationKeyFilterSet, RoutingRuleFilterSet
from ..models import AccessRule, Application, ApplicationKey, RoutingRule
from ..notifications import NOTIFIED, notify
from ..simulator import simulate
from ..validation import all_findings
from .serializers import (
    AccessRuleSerializer,
    ApplicationKeySerializer,
    ApplicationSerializer,
    FindingListSerializer,
    FindingQuerySerializer,
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
        key = self.get_object_for(CHANGE)
        key.revoke()
        return Response(self.get_serializer(key).data)


class AccessRuleViewSet(MeshModelViewSet):
    queryset = AccessRule.objects.select_related("team", "principal_application", "principal_team").order_by("pk")
    serializer_class = AccessRuleSerializer
    filterset_class = AccessRuleFilterSet


class RoutingRuleViewSet(MeshModelViewSet):
    """Routing rules. One whose source covers another team's topics is requested from that team
    when saved, and routes nothing until approved (``routes``, ``not_routing_because``). The
    source team approves or rejects it (``POST …/approve/``, ``…/reject/`` with a comment) and may
    revoke its approval; the rule's team requests a rejected or revoked rule again. A step the
    state does not allow answers 409, a step your side may not take 403, each with ``detail``."""

    queryset = (RoutingRule.objects.select_related("team", "source_team").prefetch_related("targets")
                .order_by("order", "pk"))
    serializer_class = RoutingRuleSerializer
    filterset_class = RoutingRuleFilterSet

    def perform_create(self, serializer):
        with transaction.atomic():
            super().perform_create(serializer)
            if serializer.review_requested:
                notify(serializer.instance, "requested", self.request)

    def perform_update(self, serializer):
        with transaction.atomic():
            serializer.save()
            if serializer.review_requested:
                notify(serializer.instance, "requested", self.request)

    def _step(self, request, step):
        rule = self.get_object()
        body = StepSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                rule.transition(step, by=request.user, comment=body.validated_data["comment"])
                if step in NOTIFIED:
                    notify(rule, NOTIFIED[step], request)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        except DjangoValidationError as exc:
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(rule).data)

    @extend_schema(request=StepSerializer, responses=RoutingRuleSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._step(request, "approve")

    @extend_schema(request=StepSerializer, responses=RoutingRuleSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._step(request, "reject")

    @extend_schema(request=None, responses=RoutingRuleSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        return self._step(request, "revoke")

    @extend_schema(request=None, responses=RoutingRuleSerializer)
    @action(detail=True, methods=["post"], url_path="request")
    def request_again(self, request, pk=None):
        """Ask the source team again for a rejected or revoked rule."""
        return self._step(request, "request")


class SimulatorView(APIView):
    """May this application publish (or subscribe) to this topic? With the deciding rule and every
    rule that matched, from the rules the runtimes would receive if published now."""

    @extend_schema(parameters=[SimulationQuerySerializer], responses=SimulationSerializer)
    def get(self, request):
        query = SimulationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        return Response(simulate(data["application"].name, data["topic"], data["action"]).as_dict())


class ValidationView(APIView):
    """Every validation warning about what you may see (the Validation page): subscriptions a rule
    denies, routing rules without the approval they need or into deprecated topics, subscriptions
    past their topic's sunset, teams without an owner."""

    @extend_schema(parameters=[FindingQuerySerializer], responses=FindingListSerializer)
    def get(self, request):
        query = FindingQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        code = query.validated_data.get("code")
        findings = [f for f in all_findings(request.user) if not code or f.code == code]
        return Response(FindingListSerializer({"count": len(findings), "results": findings}).data)
