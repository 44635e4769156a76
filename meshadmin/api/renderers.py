"""JSON for the answers that carry stored JSON text as it was stored.

DRF's renderer writes Python values, and an event read into Python values and written again is
not the event that was published: ``0.1000000000000000055511151231257827`` comes back ``0.1``, a
whole number beyond 64 bits comes back rounded too. :class:`ExactJSONRenderer` writes with orjson,
which embeds an ``orjson.Fragment`` verbatim, so such a view answers with the stored text itself
(:class:`meshadmin.api.fields.StoredJSONField`). The rest of the answer is written as DRF writes
it: compact UTF-8, DRF's encoder for what JSON has no type for (times, decimals, lazy strings),
U+2028 and U+2029 escaped.
"""

from __future__ import annotations

from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings
from rest_framework.utils.encoders import JSONEncoder

_ENCODER = JSONEncoder()
#: Times go to DRF's encoder (milliseconds, ``Z``), as in every other answer of the API.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


class ExactJSONRenderer(JSONRenderer):
    """``application/json`` written by orjson, fragments embedded as they are. An integer beyond
    64 bits outside a fragment is refused (orjson's ``TypeError``): no view that uses this renderer
    has one outside the stored text."""

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        options = _OPTIONS
        if self.get_indent(accepted_media_type, renderer_context or {}):
            options |= orjson.OPT_INDENT_2  # orjson indents by two, whatever width was asked for
        text = orjson.dumps(data, default=_ENCODER.default, option=options)
        # A strict JavaScript subset, as DRF's renderer makes it: these two may only be in strings.
        return text.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")


#: The API's renderers with JSON written by :class:`ExactJSONRenderer`, for the views whose
#: answers embed stored JSON text (the browsable API shows the same text).
EXACT_RENDERERS = [ExactJSONRenderer, *(renderer for renderer in api_settings.DEFAULT_RENDERER_CLASSES
                                        if not issubclass(renderer, JSONRenderer))]
