"""API of the rollout: ``/api/v1/runtimes/`` and ``/api/v1/config-versions/``.

Push now and rollback are staff-only: ``ConfigVersion.objects.restrict(user, CHANGE)`` is empty
for everyone else, so a rollback of a version answers 404, and push now 403.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from meshadmin.api.views import MeshReadOnlyViewSet
from meshadmin.querysets import CHANGE

from .. import push as mesh_push  # beside the viewset's own push action
from ..models import ConfigVersion, Runtime, redacted
from .serializers import ConfigVersionDetailSerializer, ConfigVersionSerializer, PushResultSerializer, RuntimeSerializer


class RuntimeViewSet(MeshReadOnlyViewSet):
    queryset = Runtime.objects.all()
    serializer_class = RuntimeSerializer
    filterset_fields = ["application", "host", "config_version"]
    ordering_fields = ["application", "host", "last_seen", "config_version"]

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "latest": mesh_push.latest_version()}


class ConfigVersionViewSet(MeshReadOnlyViewSet):
    queryset = ConfigVersion.objects.select_related("created_by").defer("document")
    serializer_class = ConfigVersionSerializer
    filterset_fields = ["kind", "version"]
    ordering_fields = ["version", "created"]

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.defer("diff", "changes") if self.action == "list" else queryset

    def get_serializer_class(self):
        return ConfigVersionSerializer if self.action == "list" else ConfigVersionDetailSerializer

    @extend_schema(responses=dict)
    @action(detail=True, methods=["get"])
    def document(self, request, pk=None):
        """The published document, signing secrets redacted (``manage.py mesh export-config``
        prints the current one whole)."""
        version = self.get_object()
        document = ConfigVersion.objects.values_list("document", flat=True).get(pk=version.pk)
        if document is None:
            return Response({"detail": mesh_push.PRUNED}, status=status.HTTP_410_GONE)
        return Response(redacted(document))

    @extend_schema(request=None, responses=PushResultSerializer)
    @action(detail=False, methods=["post"])
    def push(self, request):
        """Compile and publish now (staff): a changed database becomes a new version, an unchanged
        one has its latest version announced again."""
        if not ConfigVersion.can_push(request.user):
            raise PermissionDenied("Only staff push the mesh configuration.")
        try:
            result = mesh_push.push(ConfigVersion.MANUAL, force=True, user=request.user, wait=10.0)
        except mesh_push.PushBusy:
            return Response({"detail": "Another push is in progress; try again."}, status=status.HTTP_409_CONFLICT)
        code = status.HTTP_400_BAD_REQUEST if result.outcome == "failed" else status.HTTP_200_OK
        return Response(result.as_dict(), status=code)

    @extend_schema(request=None, responses=PushResultSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Publish this version's content again under a new version number (staff)."""
        target = get_object_or_404(ConfigVersion.objects.restrict(request.user, CHANGE).only("pk", "version"),
                                   pk=pk)
        try:
            result = mesh_push.rollback(target, user=request.user)
        except mesh_push.PushBusy:
            return Response({"detail": "Another push is in progress; try again."}, status=status.HTTP_409_CONFLICT)
        code = status.HTTP_400_BAD_REQUEST if result.outcome == "failed" else status.HTTP_201_CREATED
        return Response(result.as_dict(), status=code)
