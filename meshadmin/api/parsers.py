"""The API's one parser: JSON, without NUL characters (the database refuses them, in text and in
JSON columns alike, so a body carrying one is a 400 here rather than a 500 at the save)."""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _has_null_character(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_null_character(k) or _has_null_character(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_null_character(item) for item in value)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if _has_null_character(data):
            raise ParseError("Null characters (\\u0000) are not allowed in the body.")
        return data
