"""``POST /api/v1/topics/<name>/test-events/``: send a test event, answered as a runtime would."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from meshadmin.api.parsers import JSONParser
from meshadmin.api.renderers import EXACT_RENDERERS
from meshruntime.cloudevents import member_text

from ..access import visible_topics
from ..event_views import NOT_A_SENDER, may_send
from ..test_events import BadEvent, TestEvent, send, sender_applications
from .serializers import ErrorSerializer, RefusalSerializer, TestEventAcceptedSerializer, TestEventSerializer


class TestEventsAPIView(APIView):
    """The event carries the text of the body's ``data`` member as sent, never parsed and written
    again, and the answer shows the event with that text: every digit of its numbers is kept."""

    __test__ = False  # not a pytest class, whatever its name
    parser_classes = [JSONParser]  # the data's text is cut from the body: JSON only
    renderer_classes = EXACT_RENDERERS

    @extend_schema(
        operation_id="topics_test_events_create",
        request=TestEventSerializer,
        responses={
            202: TestEventAcceptedSerializer,
            400: OpenApiResponse(RefusalSerializer, description="The data does not match the topic's schema "
                                 "(``path`` says where), or a field is invalid (a message per field)."),
            401: OpenApiResponse(ErrorSerializer, description="Not signed in."),
            403: OpenApiResponse(RefusalSerializer, description="The application may not publish to the topic "
                                 "(``rule`` is the deciding access rule), or you have no application to send as."),
            404: OpenApiResponse(ErrorSerializer, description="No such topic (or it is not in the published "
                                 "configuration: ``unknown_topic``)."),
            409: OpenApiResponse(RefusalSerializer, description="The application is not in the published "
                                 "configuration yet."),
            413: OpenApiResponse(RefusalSerializer, description="The event is larger than a runtime accepts."),
            503: OpenApiResponse(RefusalSerializer, description="No configuration published yet, or the event "
                                 "store did not take the event; nothing was stored."),
        },
    )
    def post(self, request, name: str):
        """Check one event as a runtime checks it (access rule, schema, routing) on the latest published
        configuration, as one of your team's applications, and store it. Audited, whatever the answer."""
        topic = get_object_or_404(visible_topics(request.user).select_related("store", "team"), name=name)
        if not may_send(request.user):
            raise PermissionDenied(NOT_A_SENDER)
        body = request.body  # before request.data, which reads the stream it comes from
        given = TestEventSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        values = given.validated_data
        application = sender_applications(request.user).filter(name=values["application"]).first()
        if application is None:
            raise ValidationError({"application": [f"{values['application']!r} is not an application of a team "
                                                   "you own or are a member of."]})
        data = None if values.get("data") is None else member_text(body, "data").decode("utf-8")
        spec = TestEvent(application=application, type=values["type"], source=values["source"],
                         subject=values["subject"], extensions=values["extensions"], data=data)
        try:
            answer = send(topic, spec, user=request.user)
        except BadEvent as error:
            raise ValidationError({error.field: [str(error)]}) from None
        body = dict(answer.body)
        if answer.accepted:
            body["journey"] = reverse("api:event-journey", args=[answer.event_id])
        return Response(body, status=answer.status)

