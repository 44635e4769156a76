"""What changed between two MeshConfig documents, for people: added, removed and changed entries.

Entries are matched by their identity (stores, topics and applications by name; rules and
subscriptions by id). A changed entry lists its changed fields with the values before and after,
except secrets, which are only said to have changed. The diff is stored with each version, and
is what the version page, the API and ``manage.py mesh`` show.
"""

from __future__ import annotations

import json
from typing import Any

from meshruntime import patch

from .disclosure import without_digests

#: (section, identity field, label) in the order a reader expects them; identities are the
#: contract's (meshruntime.patch.IDENTITY).
SECTIONS: tuple[tuple[str, str, str], ...] = tuple(
    (section, patch.IDENTITY[section], label) for section, label in (
        ("stores", "store"), ("topics", "topic"), ("applications", "application"),
        ("access_rules", "access rule"), ("subscriptions", "subscription"), ("routing_rules", "routing rule"),
    )
)
SECRET_FIELDS = frozenset({"secret"})
_MAX_VALUE = 300  # characters of a value shown in a diff; longer ones are cut


def _shown(value: Any) -> Any:
    """Small values as they are; big ones (a data schema) as cut JSON text."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _field_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in SECRET_FIELDS:
            changes[name] = {"secret": True}
        elif name == "keys":
            old_prefixes = {k["prefix"] for k in old or ()}
            new_prefixes = {k["prefix"] for k in new or ()}
            changes[name] = {"added": sorted(new_prefixes - old_prefixes),
                             "removed": sorted(old_prefixes - new_prefixes)}
            if not (changes[name]["added"] or changes[name]["removed"]):
                # an expiry changed: shown without the digests, which never leave the server
                changes[name] = {"before": _shown(without_digests(old)), "after": _shown(without_digests(new))}
        else:
            changes[name] = {"before": _shown(old), "after": _shown(new)}
    return changes


def diff_documents(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """``{section: {"added": [ids], "removed": [ids], "changed": [{"id", "fields"}]}}`` for every
    section that differs; ``old`` None (the first version) lists everything as added."""
    diff: dict[str, Any] = {}
    for section, identity, _label in SECTIONS:
        old_items, new_items = (old or {}).get(section, []), new.get(section, [])
        if len(old_items) == len(new_items) and [i[identity] for i in old_items] == [i[identity] for i in new_items]:
            # The usual case, the same entries in the same order: compare them in place (a push
            # diffs every entry of the mesh after every change; matching by identity costs more).
            changed = [{"id": a[identity], "fields": _field_changes(b, a)}
                       for b, a in zip(old_items, new_items, strict=True) if b != a]
            if changed:
                diff[section] = {"added": [], "removed": [], "changed": sorted(changed, key=lambda c: c["id"])}
            continue
        before = {item[identity]: item for item in (old or {}).get(section, ())}
        after = {item[identity]: item for item in new.get(section, ())}
        added = sorted(after.keys() - before.keys())
        removed = sorted(before.keys() - after.keys())
        changed = [
            {"id": ident, "fields": _field_changes(before[ident], after[ident])}
            for ident in sorted(before.keys() & after.keys())
            if before[ident] != after[ident]
        ]
        if added or removed or changed:
            diff[section] = {"added": added, "removed": removed, "changed": changed}
    return diff


def summarize(diff: dict[str, Any] | None) -> str:
    """One line: "topics: 1 added; access rules: 1 changed (rule-12)"."""
    if not diff:
        return "no change in content"
    parts = []
    for section, _identity, label in SECTIONS:
        entry = diff.get(section)
        if not entry:
            continue
        bits = []
        for what in ("added", "removed", "changed"):
            ids = [item["id"] if isinstance(item, dict) else item for item in entry[what]]
            if ids:
                named = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
                bits.append(f"{len(ids)} {what} ({named})")
        parts.append(f"{label}s: " + ", ".join(bits))
    return "; ".join(parts)


def changed_part(doc: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``doc`` that ``diff`` added or changed, with every entry they refer to
    (meshruntime.patch.changed_part explains why validating that part is enough)."""
    wanted = {section: [*entry["added"], *(item["id"] for item in entry["changed"])] for section, entry in diff.items()}
    return patch.changed_part(doc, wanted)


def locate(message: str, part: dict[str, Any], doc: dict[str, Any]) -> str:
    """Rewrite ``section[i]`` at the start of a validation message about ``part`` to the entry's
    index in the whole ``doc``, so the message points where the document has it."""
    for section, identity, _label in SECTIONS:
        head = f"{section}["
        if message.startswith(head):
            index, _, rest = message[len(head):].partition("]")
            if index.isdigit() and int(index) < len(part[section]):
                ident = part[section][int(index)][identity]
                full = next(i for i, item in enumerate(doc[section]) if item[identity] == ident)
                return f"{section}[{full}]{rest}"
    return message
