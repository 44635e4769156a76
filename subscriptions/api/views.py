from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from meshadmin.api.exceptions import Conflict
from meshadmin.api.renderers import EXACT_RENDERERS
from meshadmin.api.views import MeshModelViewSet, MeshReadOnlyViewSet
from meshadmin.querysets import CHANGE

from .. import delivery
from ..filtersets import SubscriptionFilterSet
from ..models import APPLICATION_SIDE, Subscription, SubscriptionChange, TransitionRefused
from ..notifications import notify, notify_change
from ..views import NOTIFIED
from .serializers import (
    DeadLetterPageSerializer,
    DeadLetterQuerySerializer,
    DeliveryStateSerializer,
    RedeliverResultSerializer,
    RedeliverSerializer,
    SigningSecretSerializer,
    SkipResultSerializer,
    SkipToNowSerializer,
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


    # Delivery: the Delivery tab's state, dead letters and actions. Both teams read them; acting
    # takes ``change`` on the subscription (the application team's editors), as on the page.

    _UNAVAILABLE = {503: OpenApiResponse(description="The runtimes' Redis is unreachable (``detail`` says why).")}

    @staticmethod
    def _unavailable(error: delivery.DeliveryUnavailable) -> Response:
        return Response({"detail": str(error)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)

    def _live_subscription(self) -> Subscription:
        subscription = self.get_object_for(CHANGE)
        reason = delivery.not_delivered_because(subscription)
        if reason is not None:
            raise Conflict(reason)
        return subscription

    @extend_schema(responses={200: DeliveryStateSerializer, **_UNAVAILABLE})
    @action(detail=True, methods=["get"], url_path="delivery")
    def delivery_state(self, request, pk=None):
        """Lag, pending events, totals, the delivery rate and the last error of the subscription."""
        try:
            state = delivery.state(self.get_object())
        except delivery.DeliveryUnavailable as error:
            return self._unavailable(error)
        return Response(DeliveryStateSerializer(state).data)

    @extend_schema(parameters=[DeadLetterQuerySerializer], responses={200: DeadLetterPageSerializer, **_UNAVAILABLE})
    @action(detail=True, methods=["get"], url_path="dead-letters", renderer_classes=EXACT_RENDERERS)
    def dead_letters(self, request, pk=None):
        """The subscription's dead letters, newest first, ``limit`` at a time."""
        subscription = self.get_object()
        query = DeadLetterQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        limit = query.validated_data["limit"]
        try:
            letters = delivery.dead_letters(subscription, before=query.validated_data.get("before"), count=limit + 1)
        except delivery.DeliveryUnavailable as error:
            return self._unavailable(error)
        page = {"results": letters[:limit], "next_before": letters[limit - 1].id if len(letters) > limit else None}
        return Response(DeadLetterPageSerializer(page).data)

    @extend_schema(request=RedeliverSerializer, responses={200: RedeliverResultSerializer, **_UNAVAILABLE})
    @action(detail=True, methods=["post"])
    def redeliver(self, request, pk=None):
        """Put dead letters back for this subscription alone (``ids``, or ``all``); audited. 409 when
        no runtime delivers the subscription (requested, rejected, revoked)."""
        subscription = self._live_subscription()
        body = RedeliverSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        ids = None if body.validated_data["all"] else body.validated_data["ids"]
        try:
            moved = delivery.redeliver(subscription, ids, user=request.user)
        except delivery.DeliveryUnavailable as error:
            return self._unavailable(error)
        return Response({"redelivered": moved})

    @extend_schema(request=SkipToNowSerializer, responses={200: SkipResultSerializer, **_UNAVAILABLE})
    @action(detail=True, methods=["post"], url_path="skip-to-now")
    def skip_to_now(self, request, pk=None):
        """Move the subscription to the end of its topic: what is not delivered yet never will be
        (``confirm`` must be true); audited. 409 when no runtime delivers the subscription."""
        subscription = self._live_subscription()
        SkipToNowSerializer(data=request.data).is_valid(raise_exception=True)
        try:
            result = delivery.skip_to_now(subscription, user=request.user)
        except delivery.DeliveryUnavailable as error:
            return self._unavailable(error)
        return Response({"skipped": result.skipped, "acknowledged": result.acknowledged})


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
