"""Serializer fields that take JSON's types as the OpenAPI description states them.

DRF is lenient on input: a CharField takes ``0`` and makes it ``"0"``, an IntegerField takes
``"5"``, a BooleanField takes ``"yes"``. The description says string, integer, boolean, so the
API refuses anything else with a message naming the type wanted, as the description promises.
"""

from __future__ import annotations

from rest_framework import serializers


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
