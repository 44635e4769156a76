from __future__ import annotations

from rest_framework import viewsets
from rest_framework.exceptions import PermissionDenied

from meshadmin.querysets import CHANGE, DELETE, VIEW, may_create

_ACTION_FOR_METHOD = {"PUT": CHANGE, "PATCH": CHANGE, "DELETE": DELETE}


class MeshModelViewSet(viewsets.ModelViewSet):
    """Objects come from ``restrict(user, action)``: what a user may not see or change is 404."""

    filterset_class = None

    def get_queryset(self):
        action = _ACTION_FOR_METHOD.get(self.request.method, VIEW)
        return self.queryset.restrict(self.request.user, action)

    def perform_create(self, serializer):
        model = self.queryset.model
        if not may_create(model, self.request.user):
            raise PermissionDenied(f"You may not create {model._meta.verbose_name_plural}.")
        serializer.save()


class MeshReadOnlyViewSet(viewsets.ReadOnlyModelViewSet):
    def get_queryset(self):
        return self.queryset.restrict(self.request.user, VIEW)
