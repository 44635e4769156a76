"""Serializer fields that take and give JSON as the OpenAPI description states it.

DRF is lenient on input: a CharField takes ``0`` and makes it ``"0"``, an IntegerField takes
``"5"``, a BooleanField takes ``"yes"``. The description says string, integer, boolean, so the
API refuses anything else with a message naming the type wanted, as the description promises.

On output, :class:`StoredJSONField` gives stored JSON text (an event) as it was stored.
"""

from __future__ import annotations

import orjson
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from meshruntime.cloudevents import loads


class _StrictString:
    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("A string is required.", code="invalid")
        return super().to_internal_value(data)


class StrictCharField(_StrictString, serializers.CharField):
    pass


class StrictSlugField(_StrictString, serializers.SlugField):
    pass


class StrictURLField(_StrictString, serializers.URLField):
    pass


class StrictEmailField(_StrictString, serializers.EmailField):
    pass


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not (isinstance(data, int) or (isinstance(data, float) and data.is_integer())):
            raise serializers.ValidationError("A whole number is required.", code="invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            raise serializers.ValidationError("true or false is required.", code="invalid")
        return data


@extend_schema_field({"oneOf": [{"type": "object", "additionalProperties": True}, {"type": "string"}]})
class StoredJSONField(serializers.Field):
    """Stored JSON text (bytes) given as it is stored: a JSON object embedded verbatim, each number
    with every digit it was written with and the members in their order, which reading it into
    Python values and writing it again would not keep (``0.1000000000000000055511151231257827``
    would come back ``0.1``). Anything else, not JSON or not an object, is given as its text.

    The view must write its answers with :data:`meshadmin.api.renderers.EXACT_RENDERERS`. What is
    embedded is checked first by the mesh's own parser, which reads any number JSON allows and
    refuses what JSON does not (``NaN``, ``Infinity``, invalid UTF-8), so the answer stays JSON."""

    def __init__(self, **kwargs) -> None:
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: bytes) -> orjson.Fragment | str:
        try:
            is_object = isinstance(loads(value), dict)
        except orjson.JSONDecodeError:
            is_object = False
        return orjson.Fragment(value) if is_object else value.decode("utf-8", "replace")
