"""API of the rollout: ``/api/v1/runtimes/`` and ``/api/v1/config-versions/``.

Push now and rollback are staff-only: ``ConfigVersion.objects.restrict(user, CHANGE)`` is empty
for everyone else, so a rollback of a version answers 404, and push now 403. A rollback restores
the database (rollout.restore): preview first, then confirm with the preview's fingerprint.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from meshadmin.api.views import MeshReadOnlyViewSet
from meshadmin.querysets import CHANGE

from .. import push as mesh_push  # beside the viewset's own push action
from .. import restore
from ..disclosure import DOCUMENTS_FOR_STAFF, may_read_documents, redact
from ..models import ConfigVersion, Runtime
from .serializers import (
    ConfigVersionDetailSerializer,
    ConfigVersionSerializer,
    PushResultSerializer,
    RestorePlanSerializer,
    RollbackRequestSerializer,
    RuntimeSerializer,
)


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
        """The published document, for staff, with key digests and signing secrets redacted
        (rollout.disclosure); 403 for everyone else."""
        version = self.get_object()
        if not may_read_documents(request.user):
            raise PermissionDenied(DOCUMENTS_FOR_STAFF)
        document = ConfigVersion.objects.values_list("document", flat=True).get(pk=version.pk)
        if document is None:
            return Response({"detail": mesh_push.PRUNED}, status=status.HTTP_410_GONE)
        return Response(redact(document))

    @extend_schema(request=None, responses=PushResultSerializer)
    @action(detail=False, methods=["post"])
    def push(self, request):
        """Compile and publish now (staff): a changed database becomes a new version, an unchanged
        one has its latest version announced again, or its content published as a new version
        above what Redis announces when that is not the database's newest version, whole."""
        if not ConfigVersion.can_push(request.user):
            raise PermissionDenied("Only staff push the mesh configuration.")
        try:
            result = mesh_push.push(ConfigVersion.MANUAL, force=True, user=request.user, wait=10.0)
        except mesh_push.PushBusy:
            return Response({"detail": "Another push is in progress; try again."}, status=status.HTTP_409_CONFLICT)
        code = status.HTTP_400_BAD_REQUEST if result.outcome == "failed" else status.HTTP_200_OK
        return Response(result.as_dict(), status=code)

    def _rollback_target(self, pk):
        if not str(pk).isdigit():
            raise NotFound("No config version with this id.")
        return get_object_or_404(ConfigVersion.objects.restrict(self.request.user, CHANGE)
                                 .only("pk", "version", "created"), pk=pk)

    @extend_schema(responses={200: RestorePlanSerializer, 400: PushResultSerializer})
    @action(detail=True, methods=["get"], url_path="restore-preview")
    def restore_preview(self, request, pk=None):
        """What rolling back to this version would do to the database (staff): every row it
        creates, changes or deletes, what it cannot restore, and what would still differ. POST
        its ``confirm`` to ``…/rollback/`` to do exactly that."""
        target = self._rollback_target(pk)
        try:
            plan = restore.preview(target, request.user)
        except restore.RestoreRefused as error:
            return Response({"outcome": "failed", "version": None, "error": str(error)},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response(plan.as_dict())

    @extend_schema(request=RollbackRequestSerializer,
                   responses={201: PushResultSerializer, 400: PushResultSerializer, 409: RestorePlanSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Restore the database to this version's content and publish it (staff): send the
        ``confirm`` of ``…/restore-preview/``. 409 with the new preview if the database changed
        since; 400 when the version cannot be restored."""
        target = self._rollback_target(pk)
        body = RollbackRequestSerializer(data=request.data)
        try:
            restore.target_document(target)
        except restore.RestoreRefused as error:
            return Response({"outcome": "failed", "version": None, "error": str(error)},
                            status=status.HTTP_400_BAD_REQUEST)
        body.is_valid(raise_exception=True)
        try:
            outcome = restore.rollback(target, request.user, confirm=body.validated_data["confirm"])
        except restore.PlanChanged as changed:
            return Response({"detail": str(changed), **changed.plan.as_dict()}, status=status.HTTP_409_CONFLICT)
        except restore.RestoreRefused as error:
            return Response({"outcome": "failed", "version": None, "error": str(error)},
                            status=status.HTTP_400_BAD_REQUEST)
        except mesh_push.PushBusy:
            return Response({"detail": "Another push is in progress; try again."}, status=status.HTTP_409_CONFLICT)
        code = status.HTTP_400_BAD_REQUEST if outcome.push.outcome == "failed" else status.HTTP_201_CREATED
        return Response({**outcome.push.as_dict(), "restore": outcome.plan.as_dict()}, status=code)
