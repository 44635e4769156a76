"""Would a schema refuse data that another admits? A simple structural comparison of two schemas.

A routing rule copies events of its source topics into its targets; a copy into a topic with a
schema must pass that schema, or it is dropped (meshruntime.publish). :func:`refused_by` tells,
when a rule is saved, where the target's schema refuses data that the source's schema (or a
source without one) lets producers publish, so that the rule's authors know before events go
missing from the target.

It compares the two schemas node by node, from the root, and reports what it can be sure of:

- ``type``: the source admits a type the target does not (``integer`` counts as a ``number``);
- ``required``: the target requires a property the source does not;
- ``properties``: compared where both describe a property; a property the target constrains
  but the source does not describe is refused when the source admits anything there;
  ``additionalProperties: false`` in the target refuses properties the source admits;
- ``enum`` / ``const``: the target admits fewer values;
- bounds (``minimum``, ``maximum``, the exclusive ones, ``minLength``, ``maxLength``,
  ``minItems``, ``maxItems``, ``minProperties``, ``maxProperties``, ``multipleOf``, ``pattern``,
  ``uniqueItems``): the target's is stricter, or the source has none (``format`` is not
  asserted by the runtimes, so it refuses nothing);
- ``items``: compared as a schema.

Local ``$ref`` (``#/...``) are followed. A node that uses ``anyOf``, ``oneOf``, ``allOf``, ``not``,
``if`` or another keyword it does not know is not compared below (no finding there): the check
may miss a gap, it does not invent one. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SchemaGap", "refused_by"]

_COMPOSED = ("anyOf", "oneOf", "allOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems",
             "patternProperties", "propertyNames", "contains", "unevaluatedProperties", "unevaluatedItems")
# bound keyword -> True when a larger value is stricter
_LOWER = {"minimum": True, "exclusiveMinimum": True, "minLength": True, "minItems": True, "minProperties": True}
_UPPER = {"maximum": False, "exclusiveMaximum": False, "maxLength": False, "maxItems": False,
          "maxProperties": False}
_TYPES = ("null", "boolean", "object", "array", "number", "string", "integer")
MAX_GAPS = 20
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class SchemaGap:
    """Data the source admits and the target refuses, at ``path`` (``data.amount``)."""

    path: str
    keyword: str  # the target's keyword that refuses: "type", "required", "minimum", ...
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def refused_by(source: Any, target: Any) -> list[SchemaGap]:
    """Where ``target`` (a topic's data schema) refuses data that ``source`` admits; ``source``
    None is a topic without a schema, which admits any data, JSON or not (one gap says so). At
    most 20 gaps."""
    if target is None or target is True or target == {}:
        return []
    if source is None:
        return [SchemaGap("data", "schema", "the source has no schema: it admits any data, which the target's "
                                            "schema checks")]
    gaps: list[SchemaGap] = []
    _Walk(source, target, gaps).node("data", source, target, 0)
    return gaps[:MAX_GAPS]


def _types(schema: dict) -> set[str] | None:
    kind = schema.get("type")
    if kind is None:
        return None
    return {kind} if isinstance(kind, str) else set(kind)


def _admitted(types: set[str] | None) -> set[str]:
    if types is None:
        return set(_TYPES) - {"integer"}  # "number" includes the integers
    return {"number" if kind == "integer" and "number" in types else kind for kind in types}


def _accepts(target_types: set[str] | None, kind: str) -> bool:
    if target_types is None:
        return True
    return kind in target_types or (kind == "integer" and "number" in target_types)


class _Walk:
    def __init__(self, source_root: Any, target_root: Any, gaps: list[SchemaGap]) -> None:
        self.roots = (source_root, target_root)
        self.gaps = gaps

    def gap(self, path: str, keyword: str, message: str) -> None:
        if len(self.gaps) < MAX_GAPS:
            self.gaps.append(SchemaGap(path, keyword, message))

    def resolve(self, schema: Any, root: Any, seen: int = 0) -> Any:
        """``schema`` with local ``$ref`` followed (at most a few hops); None when it cannot be."""
        while isinstance(schema, dict) and "$ref" in schema and seen < 8:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#") or not isinstance(root, dict):
                return None
            node: Any = root
            for part in filter(None, ref[1:].split("/")):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(node, dict) or part not in node:
                    return None
                node = node[part]
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if rest:  # $ref beside other keywords: not compared
                return None
            schema, seen = node, seen + 1
        return schema

    def node(self, path: str, source: Any, target: Any, depth: int) -> None:
        source = self.resolve(source, self.roots[0])
        target = self.resolve(target, self.roots[1])
        if target is None or source is None or depth > MAX_DEPTH:
            return
        if target is True or target == {} or source is False:
            return
        if target is False:
            self.gap(path, "false", "the target's schema admits nothing here, the source does")
            return
        if not isinstance(target, dict):
            return
        if source is True:
            source = {}
        if not isinstance(source, dict) or any(k in target for k in _COMPOSED) or any(k in source for k in _COMPOSED):
            return
        source_types, target_types = _types(source), _types(target)
        if target_types is not None:
            extra = sorted(kind for kind in _admitted(source_types) if not _accepts(target_types, kind))
            if extra:
                self.gap(path, "type", f"the source admits {', '.join(extra)}, the target only "
                                       f"{', '.join(sorted(target_types))}")
        self.values(path, source, target)
        self.bounds(path, source, target)
        if _accepts(target_types, "object") and (source_types is None or "object" in source_types):
            self.objects(path, source, target, depth)
        if _accepts(target_types, "array") and (source_types is None or "array" in source_types) \
                and "items" in target:
            self.node(f"{path}[]", source.get("items", True), target["items"], depth + 1)

    def values(self, path: str, source: dict, target: dict) -> None:
        allowed = [target["const"]] if "const" in target else target.get("enum")
        if allowed is None:
            return
        admitted = [source["const"]] if "const" in source else source.get("enum")
        if admitted is None:
            self.gap(path, "enum", f"the target accepts only {_few(allowed)}, the source other values too")
            return
        others = [value for value in admitted if value not in allowed]
        if others:
            self.gap(path, "enum", f"the source admits {_few(others)}, which the target does not accept")

    def bounds(self, path: str, source: dict, target: dict) -> None:
        for keyword, larger_is_stricter in {**_LOWER, **_UPPER}.items():
            if keyword not in target:
                continue
            mine, theirs = target[keyword], source.get(keyword)
            if theirs is None:
                self.gap(path, keyword, f"the target requires {keyword} {mine}, the source has no such limit")
            elif isinstance(mine, int | float) and isinstance(theirs, int | float) and \
                    (mine > theirs if larger_is_stricter else mine < theirs):
                self.gap(path, keyword, f"the target requires {keyword} {mine}, the source allows {keyword} {theirs}")
        for keyword in ("pattern", "multipleOf"):
            if keyword in target and source.get(keyword) != target[keyword]:
                self.gap(path, keyword, f"the target requires {keyword} {target[keyword]!r}, "
                                        + ("the source has none" if keyword not in source
                                           else f"the source {source[keyword]!r}"))
        if target.get("uniqueItems") is True and source.get("uniqueItems") is not True:
            self.gap(path, "uniqueItems", "the target requires unique items, the source does not")

    def objects(self, path: str, source: dict, target: dict, depth: int) -> None:
        source_props = source.get("properties") or {}
        target_props = target.get("properties") or {}
        if not isinstance(source_props, dict) or not isinstance(target_props, dict):
            return
        required = set(source.get("required") or ())
        for name in target.get("required") or ():
            if name not in required:
                self.gap(f"{path}.{name}", "required", "required by the target, not by the source")
        source_extra = source.get("additionalProperties", True)
        for name, schema in target_props.items():
            if name in source_props:
                self.node(f"{path}.{name}", source_props[name], schema, depth + 1)
            elif source_extra is not False:  # the source admits anything under that name
                self.node(f"{path}.{name}", source_extra, schema, depth + 1)
        target_extra = target.get("additionalProperties", True)
        if target_extra is False:
            others = sorted(name for name in source_props if name not in target_props)
            if others:
                self.gap(path, "additionalProperties",
                         f"the target refuses properties it does not list, the source admits {_few(others)}")
            if source_extra is not False:
                self.gap(path, "additionalProperties", "the target refuses properties it does not list, "
                                                       "the source admits any other property")
        elif isinstance(target_extra, dict):
            for name, schema in source_props.items():
                if name not in target_props:
                    self.node(f"{path}.{name}", schema, target_extra, depth + 1)


def _few(values: list[Any]) -> str:
    shown = ", ".join(repr(value) for value in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")
