from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from meshadmin.api.views import MeshModelViewSet

from ..filtersets import SubscriptionFilterSet
from ..models import APPLICATION_SIDE, Subscription, TransitionRefused
from ..tasks import notify
from ..views import NOTIFIED
from .serializers import SigningSecretSerializer, StepSerializer, SubscriptionSerializer


class SubscriptionViewSet(MeshModelViewSet):
    """Subscriptions of your teams' applications and to your teams' topics.

    Creating one requests it (``state`` = requested); the topic's team approves or rejects it;
    either side pauses, resumes or revokes. A step the state does not allow answers 409, a step
    your side may not take 403, each with ``detail`` saying why.
    """

    queryset = Subscription.objects.select_related("application", "topic").order_by("-created")
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilterSet

    def perform_create(self, serializer):
        if not Subscription.can_create(self.request.user):
            raise PermissionDenied("You may not request subscriptions.")
        with transaction.atomic():
            subscription = serializer.save(requested_by=self.request.user)
            notify(subscription, "requested", self.request)

    def _step(self, request, pk, step):
        subscription = self.get_object()
        body = StepSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                subscription.transition(step, by=request.user, comment=body.validated_data["comment"])
                if step in NOTIFIED:
                    notify(subscription, NOTIFIED[step], request)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        return Response(self.get_serializer(subscription).data, status=status.HTTP_200_OK)

    @extend_schema(request=StepSerializer, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._step(request, pk, "approve")

    @extend_schema(request=StepSerializer, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._step(request, pk, "reject")

    @extend_schema(request=None, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._step(request, pk, "pause")

    @extend_schema(request=None, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._step(request, pk, "resume")

    @extend_schema(request=None, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        return self._step(request, pk, "revoke")

    @extend_schema(responses=SigningSecretSerializer)
    @action(detail=True, methods=["get"], url_path="signing-secret")
    def signing_secret(self, request, pk=None):
        """The secret that signs deliveries, for the subscribing application's team."""
        subscription = self.get_object()
        if APPLICATION_SIDE not in subscription.sides(request.user):
            raise PermissionDenied("Only the owners and members of the application's team see its signing secret.")
        return Response({"signing_secret": subscription.signing_secret})
