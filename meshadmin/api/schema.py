"""What the OpenAPI description says about errors and filters, for every operation at once.

drf-spectacular documents what a view returns when it succeeds; the errors come from machinery
every view shares (authentication, token scope, throttling, restricted querysets, validation,
deletion of what is in use), so they are added here, after generation, from what the operation
takes: every operation may answer 401, 403 and 429; one with an id in its path 404; one with
query parameters or a body 400; a deletion or a workflow step 409. ``tests/meshadmin/
test_api_schema.py`` (schemathesis) holds the description to what the server sends.

A filter's query parameter given empty does not filter (the pages' forms send every field); the
description says so rather than claiming an integer or a date is required.
"""

from __future__ import annotations

from typing import Any

DETAIL = "Detail"
VALIDATION = "ValidationErrors"

COMPONENTS = {
    DETAIL: {
        "type": "object",
        "properties": {"detail": {"type": "string", "description": "What went wrong, in words."}},
        "required": ["detail"],
        "additionalProperties": True,  # a 409 of an object in use also names its users
    },
    VALIDATION: {
        "oneOf": [{"type": "object", "additionalProperties": True}, {"type": "array"}],
        "description": "A list of messages per field (``non_field_errors`` for the whole request), or "
                       "``detail`` when the body could not be read at all.",
    },
}

WHY = {
    "400": ("Invalid query parameters or body: messages per field.", VALIDATION),
    "401": ("No credentials, or a token that is invalid, expired or of an inactive user.", DETAIL),
    "403": ("A read-only token, or what you see but may not change (``detail`` names the team and the "
            "role you lack).", DETAIL),
    "404": ("No such object among those you may see.", DETAIL),
    "409": ("The object's state does not allow it (``detail`` says why), or it is still in use.", DETAIL),
    "429": ("Too many requests: see ``Retry-After``.", DETAIL),
}
_WRITES = {"post", "put", "patch", "delete"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _codes(path: str, method: str, operation: dict) -> list[str]:
    codes = ["401", "403", "429"]
    if "{" in path:
        codes.append("404")
    takes_input = "requestBody" in operation or any(p.get("in") == "query" for p in operation.get("parameters", []))
    if takes_input or method in _WRITES:
        codes.append("400")
    if method == "delete" or (method == "post" and "{" in path) or path.endswith("/push/"):
        codes.append("409")
    return codes


#: Query parameters that are not filters: an empty value is not "no filter" for them.
_NOT_FILTERS = {"limit", "offset"}


def _empty_means_no_filter(parameter: dict) -> None:
    """A filter given empty does not filter (what the pages' forms send): say so, whatever its type."""
    schema = parameter.get("schema", {})
    if parameter.get("in") != "query" or parameter["name"] in _NOT_FILTERS:
        return
    if schema.get("type") == "string" and not schema.get("format") and not schema.get("enum") \
            and not schema.get("pattern"):
        return  # "" is one of its values already
    parameter["schema"] = {"anyOf": [schema, {"type": "string", "enum": [""]}]}
    parameter["description"] = (parameter.get("description", "") + " (empty: no filter)").strip()


def add_error_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """A POSTPROCESSING_HOOK of drf-spectacular: errors, and empty filters."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in COMPONENTS.items():
        schemas.setdefault(name, schema)
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            for parameter in operation.get("parameters", []):
                _empty_means_no_filter(parameter)
            responses = operation.setdefault("responses", {})
            for code in _codes(path, method, operation):
                if code not in responses:
                    description, component = WHY[code]
                    responses[code] = {"description": description,
                                       "content": {"application/json": {"schema": _ref(component)}}}
    return result
