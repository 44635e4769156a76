"""``limit``/``offset`` pagination that refuses what is not a count (DRF's ignores it silently,
so ``?offset=null`` answered the first page), and documents its bounds."""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination

MAX_LIMIT = 1000


class StrictLimitOffsetPagination(LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def _read(self, request, name: str, minimum: int, maximum: int | None, default: int | None):
        raw = request.query_params.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or int(raw) < minimum or (maximum is not None and int(raw) > maximum):
            bound = f" and at most {maximum}" if maximum is not None else ""
            raise ValidationError({name: [f"A whole number of at least {minimum}{bound}."]})
        return int(raw)

    def get_limit(self, request):
        return self._read(request, self.limit_query_param, 1, self.max_limit, self.default_limit)

    def get_offset(self, request):
        return self._read(request, self.offset_query_param, 0, None, 0)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
                  self.offset_query_param: {"minimum": 0}}
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
