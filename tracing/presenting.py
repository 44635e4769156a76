"""A stored event as the pages show it: what ``templates/tracing/stored_event.html`` renders.

Whole for those who may see the topic's payloads; otherwise only ``tracing.access.mask``'s
public attributes and the size of the data, never the data or the extensions.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

import orjson

from meshadmin.formatting import indented_json
from meshruntime.cloudevents import CORE_ATTRIBUTES, is_json_media_type, loads, stored_data_text
from meshruntime.store import StoredEntry

from .access import mask

__all__ = ["event_context"]


def _data(event: dict[str, Any], stored: bytes) -> tuple[str, str | None, int]:
    """``(kind, text, size)``: kind json, text, binary or none; text as shown; size in bytes.

    JSON data is shown indented, each number and string as the producer wrote it (and as it is
    stored and delivered): ``1.50`` stays ``1.50``, ``1e5`` stays ``1e5``, and a number a double
    cannot hold keeps every digit, none of which a parsed and rewritten copy would keep."""
    if "data_base64" in event:
        encoded = event["data_base64"]
        try:
            size = len(base64.b64decode(encoded, validate=True)) if isinstance(encoded, str) else 0
        except (binascii.Error, ValueError):
            size = 0
        return "binary", str(encoded), size
    if "data" not in event or event["data"] is None:
        return "none", None, 0
    data = event["data"]
    if isinstance(data, str) and not is_json_media_type(event.get("datacontenttype") or "application/json"):
        return "text", data, len(data.encode("utf-8", "surrogatepass"))
    text = stored_data_text(stored, event)
    return "json", indented_json(text.decode("utf-8", "replace")), len(text)


def event_context(entry: StoredEntry, payload_visible: bool) -> dict[str, Any]:
    """The event of ``entry`` for the detail partial (and the browser's row)."""
    when = datetime.fromtimestamp(entry.time_ms / 1000, UTC) if entry.time_ms is not None else None
    base = {"position": entry.id, "stored_at": when, "topic": entry.topic}
    try:
        event = loads(entry.event)
    except orjson.JSONDecodeError:
        event = None
    if not isinstance(event, dict):
        return {**base, "unreadable": True, "size": len(entry.event), "attributes": {}}
    kind, text, size = _data(event, entry.event)
    attributes = {k: v for k, v in event.items() if k not in ("data", "data_base64")}
    if not payload_visible:
        return {**base, "masked": True, "attributes": mask(attributes, size), "size": size,
                "id": attributes.get("id")}
    return {
        **base,
        "masked": False,
        "id": attributes.get("id"),
        "attributes": {k: v for k, v in attributes.items() if k in CORE_ATTRIBUTES},
        "extensions": {k: v for k, v in attributes.items() if k not in CORE_ATTRIBUTES},
        "data_kind": kind,
        "data_text": text,
        "size": size,
    }
