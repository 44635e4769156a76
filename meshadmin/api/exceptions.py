from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from meshadmin.deletion import InUseError, in_use


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the object's current state."
    default_code = "conflict"


def exception_handler(exc, context):
    """Model validation that escapes a serializer still answers 400 with field messages; deleting
    what is still in use answers 409 naming what uses it (meshadmin.deletion)."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    if isinstance(exc, InUseError):
        request = context.get("request")
        user = getattr(request, "user", None)
        obj = getattr(context.get("view"), "deleting", None)
        return Response(in_use(exc, obj, user).as_dict(), status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)
