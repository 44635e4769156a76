"""JSON answers that embed JSON text as it was sent: an event's data, every digit of its numbers kept.

The standard library's encoder (DRF's ``JSONRenderer``) can only write values, so it would round
``0.1000000000000000055511151231257827`` to ``0.1``; orjson, the mesh's own encoder, embeds the
text of an ``orjson.Fragment`` as it is. What orjson does not know (lazy translations, decimals)
goes through DRF's encoder.
"""

from __future__ import annotations

import orjson
from rest_framework.renderers import JSONRenderer
from rest_framework.utils.encoders import JSONEncoder

_DRF_ENCODER = JSONEncoder()


class ExactJSONRenderer(JSONRenderer):
    """Compact UTF-8 JSON, as the API writes it everywhere, with ``orjson.Fragment`` text embedded."""

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, default=_DRF_ENCODER.default)
