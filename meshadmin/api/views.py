from __future__ import annotations

from django.db import transaction
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

    #: The object a DELETE is deleting: what the 409 of an object still in use names.
    deleting = None

    def perform_destroy(self, instance):
        self.deleting = instance
        with transaction.atomic():  # a refused deletion leaves nothing half done
            instance.delete()

    def perform_create(self, serializer):
        model = self.queryset.model
        if not may_create(model, self.request.user):
            raise PermissionDenied(f"You may not create {model._meta.verbose_name_plural}.")
        serializer.save()


class MeshReadOnlyViewSet(viewsets.ReadOnlyModelViewSet):
    def get_queryset(self):
        return self.queryset.restrict(self.request.user, VIEW)
