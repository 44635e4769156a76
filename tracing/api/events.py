"""``GET /api/v1/events/<id>/journey/``: an event's journey, with the journey page's visibility rule."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import eventstore
from ..journey_views import too_long
from ..journeys import explain_missing, load_journey, locate_stored
from ..presenting import event_context
from .serializers import ErrorSerializer, JourneySerializer, MissingJourneySerializer


def _jsonable(event: dict | None) -> dict | None:
    if event is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in event.items()}


class JourneyAPIView(APIView):
    @extend_schema(
        operation_id="events_journey",
        responses={
            200: JourneySerializer,
            400: OpenApiResponse(ErrorSerializer, description="The id is too long to be an event id here."),
            401: OpenApiResponse(ErrorSerializer, description="Not signed in (no or a bad token)."),
            404: OpenApiResponse(MissingJourneySerializer,
                                 description="No journey you may see: none recorded (expired, not sampled, never "
                                             "seen: ``likely`` says which, from the runtimes' sample rates and "
                                             "TTLs), or one on a topic you may not see."),
        },
    )
    def get(self, request, event_id: str):
        """The steps of one event in order (accepted or denied, routed, stored, each delivery attempt,
        acked or dead-lettered), with the time between them. Without access to the topic's payloads,
        the fields that may quote the data are left out and the event is masked."""
        if error := too_long(event_id):
            return Response({"detail": error}, status=status.HTTP_400_BAD_REQUEST)
        journey = load_journey(event_id, request.user)
        if journey is None:
            return Response(explain_missing(event_id).as_dict(), status=status.HTTP_404_NOT_FOUND)
        store_problem = None
        try:
            locate_stored(journey)
        except eventstore.StoreUnavailable as error:  # positions stay null: the journey itself is in hand
            store_problem = str(error)
        body = journey.as_dict()
        body["store_unavailable"] = store_problem
        body["event"] = _jsonable(event_context(journey.event, journey.payload_visible)) if journey.event else None
        return Response(body)
