from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from meshadmin.api.views import MeshModelViewSet, MeshReadOnlyViewSet

from ..filtersets import SubscriptionFilterSet
from ..models import APPLICATION_SIDE, Subscription, SubscriptionChange, TransitionRefused
from ..notifications import notify, notify_change
from ..views import NOTIFIED
from .serializers import (
    SigningSecretSerializer,
    StepSerializer,
    SubscriptionChangeSerializer,
    SubscriptionSerializer,
)


class SubscriptionViewSet(MeshModelViewSet):
    """Subscriptions of your teams' applications and to your teams' topics.

    Creating one requests it (``state`` = requested); the topic's team approves or rejects it;
    either side pauses, resumes or revokes. A step the state does not allow answers 409, a step
    your side may not take 403, each with ``detail`` saying why.
    """

    queryset = Subscription.objects.select_related("application", "topic").with_pending_change().order_by("-created")
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilterSet

    @extend_schema(responses={200: SubscriptionSerializer, 202: SubscriptionSerializer})
    def update(self, request, *args, **kwargs):
        """Save the subscription; 202 when (part of) the change awaits the topic's team."""
        partial = kwargs.pop("partial", False)
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            serializer.save()
            if serializer.change is not None:
                notify_change(serializer.change, "requested", request)
        code = status.HTTP_202_ACCEPTED if serializer.change is not None else status.HTTP_200_OK
        fresh = self.get_queryset().get(pk=serializer.instance.pk)
        return Response(self.get_serializer(fresh).data, status=code)

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

    @extend_schema(responses={200: SubscriptionSerializer, 202: SubscriptionSerializer})
    def partial_update(self, request, *args, **kwargs):
        return super().partial_update(request, *args, **kwargs)

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


class SubscriptionChangeViewSet(MeshReadOnlyViewSet):
    """Changes of approved subscriptions (what they deliver, or where), which both teams see.
    The topic's team approves or rejects one (a comment is required to reject); the
    application's team withdraws it. Approving writes it onto the subscription at once."""

    queryset = (SubscriptionChange.objects.select_related("subscription__application__team",
                                                          "subscription__topic__team").order_by("-created"))
    serializer_class = SubscriptionChangeSerializer
    filterset_fields = ["state", "subscription"]

    def _step(self, request, step):
        change = self.get_object()
        body = StepSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                change.transition(step, by=request.user, comment=body.validated_data["comment"])
                if step in NOTIFIED:
                    notify_change(change, NOTIFIED[step], request)
        except TransitionRefused as exc:
            return Response({"detail": str(exc)}, status=exc.status)
        except DjangoValidationError as exc:
            return Response(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages},
                            status=status.HTTP_400_BAD_REQUEST)
        return Response(self.get_serializer(change).data)

    @extend_schema(request=StepSerializer, responses=SubscriptionChangeSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._step(request, "approve")

    @extend_schema(request=StepSerializer, responses=SubscriptionChangeSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._step(request, "reject")

    @extend_schema(request=None, responses=SubscriptionChangeSerializer)
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        return self._step(request, "withdraw")
