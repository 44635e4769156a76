"""Rows of a ``values_list()`` queryset straight from the database cursor, for bulk reads.

Django runs each value of each row through the field's converters, a cost that the config
compiler, which reads every row of the mesh after every change, would pay in full
(benchmarks/propagation.py measures the compile). These helpers skip them; the caller converts
the few column types that need it, the same way on both databases:

- booleans come back as ``0``/``1`` from SQLite: :func:`bool`;
- JSON columns come back as text (Django makes psycopg return ``jsonb`` as text, too):
  :func:`json_value`;
- dates come back as ``YYYY-MM-DD`` text from SQLite and as dates from PostgreSQL:
  :func:`date_text`.
"""

from __future__ import annotations

import datetime
from typing import Any

import orjson
from django.db import connections
from django.db.models import QuerySet


def raw_rows(queryset: QuerySet) -> list[tuple[Any, ...]]:
    """The rows of ``queryset`` (a ``values_list()``), in its column order, unconverted."""
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def json_value(value: Any) -> Any:
    """A JSON column's value: decoded text, or what the driver already decoded."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def date_text(value: Any) -> str | None:
    """A date column's value as ``YYYY-MM-DD``."""
    if value is None or isinstance(value, str):
        return value
    assert isinstance(value, datetime.date)
    return value.isoformat()
