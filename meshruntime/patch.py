"""Config patches: a version as the entries that changed since the version before it.

A runtime holding version N-1 of a large mesh (tens of thousands of topics and rules) spends a
good share of a second to fetch, parse and check snapshot N whole after a change to one rule.
So the portal publishes, beside snapshot N, a patch from N-1 (``<prefix>config:<N>:patch``),
and a runtime that holds N-1 applies it in a few milliseconds instead. It trusts a patch no more
than a snapshot:

- the checksum is recomputed over the canonical JSON of the whole resulting content and must be
  the one the portal sealed (each entry's canonical bytes are kept between versions, so only the
  changed entries are serialised again; hashing all of it stays);
- the changed entries, with every entry they refer to, are validated as a document of their
  own, the check the portal makes after a change (:func:`changed_part` says why that suffices);
- ids and names stay unique in every section the patch touches.

A patch that fails any of these, or that does not fit the version held, sends the runtime to the
snapshot, which is checked whole and has the last word (``ConfigWatcher.sync``).

The format (docs/meshconfig.md, "Patches")::

    {"format": 1, "version": 18, "checksum": "<64 hex>", "generated_at": "...",
     "base": {"version": 17, "checksum": "<64 hex>"},
     "sections": {"access_rules": [[index, remove, [entry, ...]], ...], ...}}

A splice replaces ``remove`` entries at ``index`` by its entries. Splices apply in order, each
to the list as the ones before it left it; their indexes ascend and they do not overlap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

from meshruntime.config import UNCHECKED_FIELDS, ConfigError, canonical_json, seal, validate_document

#: Every list of the document and the field that identifies its entries.
IDENTITY: dict[str, str] = {
    "stores": "name",
    "topics": "name",
    "applications": "name",
    "access_rules": "id",
    "subscriptions": "id",
    "routing_rules": "id",
}

Splice = list[Any]  # [index, remove, entries]


class PatchError(ValueError):
    """A patch that cannot be applied to the version held; the snapshot is fetched instead."""


# --------------------------------------------------------------------------------------------
# Making a patch (the portal)


def _splices(before: list[dict[str, Any]], after: list[dict[str, Any]], identity: str,
             changed: Collection[str] | None = None) -> list[Splice] | None:
    """The splices that turn ``before`` into ``after``; None if the entries both hold are not in
    the same order in both (the compiler sorts every list, so that would be a bug: no patch
    then, and runtimes fetch the snapshot). ``changed``: the identities of the entries both
    hold that differ, when known (else the entries are compared)."""
    if len(before) == len(after) and [e[identity] for e in before] == [e[identity] for e in after]:
        # The common case, entries changed in place: one pass comparing them, no walk.
        return [[at, 1, [entry]] for at, (old, entry) in enumerate(zip(before, after, strict=True))
                if (old != entry if changed is None else entry[identity] in changed)]
    before_ids = {entry[identity] for entry in before}
    after_ids = {entry[identity] for entry in after}
    splices: list[Splice] = []
    i = j = 0  # next entry of before, and of after (= where the next splice goes)

    def splice(remove: int, entry: dict[str, Any] | None) -> None:
        last = splices[-1] if splices else None
        if last is None or last[0] + len(last[2]) != j:
            last = [j, 0, []]
            splices.append(last)
        last[1] += remove
        if entry is not None:
            last[2].append(entry)

    while i < len(before) or j < len(after):
        if i < len(before) and before[i][identity] not in after_ids:
            splice(1, None)
            i += 1
        elif j < len(after) and after[j][identity] not in before_ids:
            splice(0, after[j])
            j += 1
        elif i < len(before) and j < len(after) and before[i][identity] == after[j][identity]:
            if before[i] != after[j] if changed is None else before[i][identity] in changed:
                splice(1, after[j])
            i += 1
            j += 1
        else:
            return None
    return splices


def make_patch(old: Mapping[str, Any], new: Mapping[str, Any],
               changed: Mapping[str, Collection[str]] | None = None) -> dict[str, Any] | None:
    """The patch from sealed document ``old`` to sealed ``new``, or None if a patch cannot say it
    (a field other than the lists changed). ``changed``, when the caller knows it (the portal's
    diff does), maps the lists that differ to the identities of their entries that changed in
    place; the other lists are then taken as equal. By default everything is compared."""
    content_keys = {key for key in new if key not in UNCHECKED_FIELDS}
    if content_keys != {key for key in old if key not in UNCHECKED_FIELDS}:
        return None
    if any(old[key] != new[key] for key in content_keys if key not in IDENTITY):
        return None
    sections: dict[str, list[Splice]] = {}
    for section in IDENTITY if changed is None else changed:
        splices = _splices(old[section], new[section], IDENTITY[section],
                           None if changed is None else changed[section])
        if splices is None:
            return None
        if splices:
            sections[section] = splices
    return {
        "format": new["format"],
        "version": new["version"],
        "checksum": new["checksum"],
        "generated_at": new["generated_at"],
        "base": {"version": old["version"], "checksum": old["checksum"]},
        "sections": sections,
    }


# --------------------------------------------------------------------------------------------
# The changed part (both sides)


def changed_part(doc: Mapping[str, Any], wanted: Mapping[str, Iterable[str]],
                 index: Callable[[str], Mapping[str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The entries of ``doc`` named by ``wanted`` (section -> identities), with every entry they
    refer to: a document of its own, small, that ``validate_document`` checks in proportion to
    the change. ``index(section)`` maps identities to entries (built here when not given).

    Checking only this part is enough when the previous version was valid, because what spans
    the whole document is kept by the portal's database: names and key prefixes are unique
    columns, ids are primary keys, and a reference is a foreign key (a topic with subscriptions
    cannot be deleted; a deleted target leaves its routing rule changed, hence checked). Every
    store is included, stores being few. A reference to an entry that does not exist is left
    out, so that the validation names it.
    """
    if index is None:
        built: dict[str, dict[str, dict[str, Any]]] = {}

        def index(section: str) -> Mapping[str, dict[str, Any]]:  # only the lists looked into
            if section not in built:
                built[section] = {entry[IDENTITY[section]]: entry for entry in doc[section]}
            return built[section]
    want = {section: set(wanted.get(section, ())) for section in IDENTITY}
    for rule_id in want["access_rules"]:
        rule = index("access_rules").get(rule_id)
        if rule is None:
            continue
        if isinstance(rule["principals"], list):
            want["applications"] |= {name for name in rule["principals"] if name != "*"}
        if rule_id.startswith("sub-"):
            want["subscriptions"].add(rule_id)
    for subscription_id in want["subscriptions"]:
        subscription = index("subscriptions").get(subscription_id)
        if subscription is not None:
            want["topics"].add(subscription["topic"])
            want["applications"].add(subscription["application"])
    for route_id in want["routing_rules"]:
        route = index("routing_rules").get(route_id)
        if route is not None:
            want["topics"] |= set(route["targets"])
    part: dict[str, Any] = {key: value for key, value in doc.items() if key not in IDENTITY}
    for section in IDENTITY:
        if section == "stores":
            part[section] = doc[section]
            continue
        if want[section]:
            entries = index(section)
            part[section] = [entries[ident] for ident in sorted(want[section]) if ident in entries]
        else:
            part[section] = []
    return part


# --------------------------------------------------------------------------------------------
# Applying a patch (the runtime)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Entries per block: a list's canonical bytes are kept joined in blocks, so that after a patch
#: only the blocks it touched are joined again (see Applied.content_checksum).
BLOCK = 256


def _blocks(encoded: list[bytes], start: int = 0) -> list[bytes]:
    """``encoded`` joined into blocks of BLOCK entries, from block ``start`` on."""
    return [b",".join(encoded[at:at + BLOCK]) for at in range(start * BLOCK, len(encoded), BLOCK)]


class _Entries(Mapping[str, dict[str, Any]]):
    """A list's entries by identity, through a map of identity to position (which a patch that
    only changes entries in place leaves as it is, so versions share it)."""

    __slots__ = ("_entries", "_positions")

    def __init__(self, entries: list[dict[str, Any]], positions: dict[str, int]) -> None:
        self._entries = entries
        self._positions = positions

    def __getitem__(self, ident: str) -> dict[str, Any]:
        return self._entries[self._positions[ident]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._positions)

    def __len__(self) -> int:
        return len(self._positions)


class Applied:
    """A checked document with what applying a patch to it needs: the canonical JSON of every
    entry, joined in blocks, and (built when first needed) each entry's position by identity.

    Immutable: :meth:`apply` returns a new one, sharing what a patch leaves alone.
    """

    __slots__ = ("document", "_encoded", "_blocks", "_positions")

    def __init__(self, document: dict[str, Any], encoded: dict[str, list[bytes]], blocks: dict[str, list[bytes]],
                 positions: dict[str, dict[str, int]] | None = None) -> None:
        self.document = document
        self._encoded = encoded
        self._blocks = blocks
        self._positions = positions if positions is not None else {}

    @classmethod
    def of(cls, document: dict[str, Any]) -> Applied:
        """Wrap a document that ``validate_document`` accepted."""
        encoded = {section: [canonical_json(entry) for entry in document[section]] for section in IDENTITY}
        return cls(document, encoded, {section: _blocks(entries) for section, entries in encoded.items()})

    def _positions_of(self, section: str) -> dict[str, int]:
        positions = self._positions.get(section)
        if positions is None:
            field = IDENTITY[section]
            positions = self._positions[section] = {e[field]: at for at, e in enumerate(self.document[section])}
        return positions

    def index(self, section: str) -> Mapping[str, dict[str, Any]]:
        """The entries of ``section`` by identity."""
        return _Entries(self.document[section], self._positions_of(section))

    def content_checksum(self) -> str:
        """The checksum of the content, as ``compute_checksum`` computes it, but from the blocks
        of canonical bytes: nothing is serialised again. One update per list: hashing a large
        buffer lets go of the GIL, so other threads go on meanwhile, and taking it back once is
        cheaper than once per block."""
        digest = hashlib.sha256(b"{")
        for position, key in enumerate(sorted(key for key in self.document if key not in UNCHECKED_FIELDS)):
            digest.update(b"," + canonical_json(key) + b":" if position else canonical_json(key) + b":")
            blocks = self._blocks.get(key)
            if blocks is None:
                digest.update(canonical_json(self.document[key]))
                continue
            digest.update(b"[")
            digest.update(b",".join(blocks))
            digest.update(b"]")
        digest.update(b"}")
        return digest.hexdigest()

    def apply(self, patch: Any) -> Applied:
        """The document ``patch`` makes of this one, checked (see the module's docstring).
        Raises :class:`PatchError` if it does not fit this version, :class:`ConfigError` if the
        result is not a valid document."""
        doc = self.document
        version, sections = self._check_header(patch)
        new_doc = {**doc, "format": patch["format"], "version": version, "checksum": patch["checksum"],
                   "generated_at": patch["generated_at"]}
        encoded, blocks, positions = dict(self._encoded), dict(self._blocks), dict(self._positions)
        wanted: dict[str, set[str]] = {}
        for section, splices in sections.items():
            field = IDENTITY.get(section)
            if field is None:
                raise PatchError(f"sections.{section}: not a list of the document")
            entries, blobs = list(doc[section]), list(encoded[section])
            added: list[dict[str, Any]] = []
            touched: set[int] = set()  # blocks to join again
            shifted: int | None = None  # the first block whose entries moved
            renamed = False  # whether an identity left or came: positions are counted again
            end = 0  # where the previous splice ended: splices ascend and do not overlap
            for number, splice in enumerate(splices if isinstance(splices, list) else [None]):
                where = f"sections.{section}[{number}]"
                if not (isinstance(splice, list) and len(splice) == 3 and _int(splice[0]) and _int(splice[1])
                        and isinstance(splice[2], list)):
                    raise PatchError(f"{where}: must be [index, remove, [entries]]")
                at, remove, new_entries = splice
                if at < end or remove < 0 or at + remove > len(entries):
                    raise PatchError(f"{where}: removes {remove} at {at}, outside the {len(entries)} entries "
                                     f"after index {end}")
                for entry in new_entries:
                    if not (isinstance(entry, dict) and isinstance(entry.get(field), str)):
                        raise PatchError(f"{where}: every entry must be an object with a string {field!r}")
                if remove == len(new_entries):
                    touched.update(range(at // BLOCK, (at + max(remove, 1) - 1) // BLOCK + 1))
                    renamed = renamed or any(old[field] != new[field]
                                             for old, new in zip(entries[at:at + remove], new_entries, strict=True))
                else:
                    shifted = at // BLOCK if shifted is None else shifted
                    renamed = True
                entries[at:at + remove] = new_entries
                blobs[at:at + remove] = [canonical_json(entry) for entry in new_entries]
                added.extend(new_entries)
                end = at + len(new_entries)
            if renamed:
                positions[section] = {entry[field]: at for at, entry in enumerate(entries)}
                if len(positions[section]) != len(entries):
                    raise PatchError(f"sections.{section}: the result uses an {field} twice")
            joined = list(blocks[section][:shifted])
            for number in sorted(touched):
                if number < len(joined):
                    joined[number] = b",".join(blobs[number * BLOCK:(number + 1) * BLOCK])
            if shifted is not None:
                joined += _blocks(blobs, shifted)
            new_doc[section], encoded[section], blocks[section] = entries, blobs, joined
            wanted[section] = {entry[field] for entry in added}
        applied = Applied(new_doc, encoded, blocks, positions)
        checksum = applied.content_checksum()
        if checksum != patch["checksum"]:
            raise PatchError(f"checksum: the patched content's checksum is {checksum}, the patch says "
                             f"{patch['checksum']}")
        part = changed_part(new_doc, wanted, applied.index)
        validate_document(seal(part, version))
        return applied

    def _check_header(self, patch: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(patch, dict):
            raise PatchError("(patch): must be a JSON object")
        base, version, sections = patch.get("base"), patch.get("version"), patch.get("sections")
        if not (isinstance(base, dict) and _int(base.get("version")) and isinstance(base.get("checksum"), str)):
            raise PatchError("base: must be {version, checksum} of the version it applies to")
        if (base["version"], base["checksum"]) != (self.document["version"], self.document["checksum"]):
            raise PatchError(f"base: version {base['version']} ({base['checksum'][:12]}), not the version held "
                             f"{self.document['version']} ({self.document['checksum'][:12]})")
        if not _int(version) or version <= base["version"]:
            raise PatchError(f"version: must be a number above the base's {base['version']}, got {version!r}")
        if not isinstance(sections, dict):
            raise PatchError("sections: must be an object of splices per list")
        for field in ("format", "checksum", "generated_at"):
            if field not in patch:
                raise PatchError(f"{field}: missing")
        return version, sections


def apply_patches(applied: Applied, patches: Iterable[Any]) -> Applied:
    """Apply ``patches`` in order; raises what :meth:`Applied.apply` raises."""
    for patch in patches:
        applied = applied.apply(patch)
    return applied


__all__ = ["IDENTITY", "Applied", "ConfigError", "PatchError", "apply_patches", "changed_part", "make_patch"]
