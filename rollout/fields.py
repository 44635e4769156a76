"""The field that stores a whole MeshConfig document (ConfigVersion.document)."""

from __future__ import annotations

import json

import orjson
from django.db import models
from psycopg.types.json import Jsonb


class DocumentField(models.JSONField):
    """A JSONField that reads and writes with orjson: a large mesh's document is megabytes, which
    the json module writes and reads back several times slower. (Python's json stays the fallback
    for what orjson refuses, such as integers beyond 64 bits.)"""

    @staticmethod
    def _dumps(value) -> str:
        try:
            return orjson.dumps(value).decode()
        except TypeError:
            return json.dumps(value)

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None  # SQL NULL (a pruned version), not the JSON text "null"
        if not prepared:
            value = self.get_prep_value(value)
        if connection.vendor == "postgresql":
            return Jsonb(value, dumps=self._dumps)
        return self._dumps(value)

    def db_check(self, connection):
        """No ``JSON_VALID`` check on SQLite: it parses the whole document again on every insert,
        and what is written here is orjson's output."""
        return None

    def from_db_value(self, value, expression, connection):
        if not isinstance(value, str | bytes):
            return value
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return super().from_db_value(value, expression, connection)
