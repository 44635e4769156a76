from __future__ import annotations

from django.db import transaction
from django.http import Http404
from rest_framework import viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import get_object_or_404

from meshadmin.querysets import CHANGE, DELETE, VIEW, may_create

from .permissions import why_not

_ACTION_FOR_METHOD = {"PUT": CHANGE, "PATCH": CHANGE, "DELETE": DELETE}


class MeshModelViewSet(viewsets.ModelViewSet):
    """Objects come from ``restrict(user, action)``: what a user may not see is 404; what they see
    but may not change is 403, saying which team's role they lack."""

    filterset_class = None

    def get_queryset(self):
        action = _ACTION_FOR_METHOD.get(self.request.method, VIEW)
        return self.queryset.restrict(self.request.user, action)

    def get_object(self):
        try:
            return super().get_object()
        except Http404:
            action = _ACTION_FOR_METHOD.get(self.request.method, VIEW)
            if action == VIEW:
                raise
            self.refuse_if_visible(action)
            raise

    def refuse_if_visible(self, action: str) -> None:
        """403 naming the missing role if the object in the URL is one the user may see."""
        lookup = self.lookup_url_kwarg or self.lookup_field
        visible = self.queryset.restrict(self.request.user, VIEW)
        try:
            obj = get_object_or_404(visible, **{self.lookup_field: self.kwargs[lookup]})
        except Http404:
            return
        raise PermissionDenied(why_not(self.request.user, obj, action))

    def get_object_for(self, action: str):
        """The URL's object if the user may do ``action`` on it (an action such as ``revoke``)."""
        lookup = self.lookup_url_kwarg or self.lookup_field
        allowed = self.queryset.restrict(self.request.user, action)
        try:
            return get_object_or_404(allowed, **{self.lookup_field: self.kwargs[lookup]})
        except Http404:
            self.refuse_if_visible(action)
            raise

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
