"""Deleting what is still in use: one message, for the pages and the API alike.

Relations that must not vanish under their users (a topic's subscriptions, a team's topics, a
store's topics, …) are ``PROTECT`` foreign keys, so the database itself refuses the deletion and
Django raises :class:`~django.db.models.ProtectedError`. Both the pages and the API turn that
into a 409 whose message names what still uses the object, so the operator knows what to move
or delete first. Only what the user may see is named; the rest is counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Model, ProtectedError, RestrictedError

#: At most this many users of an object are named in the message (the rest are counted).
NAMED = 5

InUseError = (ProtectedError, RestrictedError)


@dataclass(frozen=True)
class Dependent:
    model: type[Model]
    id: int | str
    display: str

    @property
    def type(self) -> str:
        return f"{self.model._meta.app_label}.{self.model._meta.model_name}"

    def as_dict(self) -> dict:
        return {"type": self.type, "id": self.id, "display": self.display}


@dataclass(frozen=True)
class InUse:
    """Why ``obj`` cannot be deleted: ``dependents`` (what the user may see) and ``hidden`` (a count)."""

    obj: Model | None
    dependents: tuple[Dependent, ...]
    hidden: int

    @property
    def message(self) -> str:
        """E.g. "Topic orders.created cannot be deleted: it is still used by 2 subscriptions
        (sub-3, sub-4). Delete or move them first." """
        what = f"{self.obj._meta.verbose_name} {self.obj}" if self.obj is not None else "this object"
        groups: dict[type[Model], list[str]] = defaultdict(list)
        for dependent in self.dependents:
            groups[dependent.model].append(dependent.display)
        parts = [f"{_count(len(names), model)}: " + ", ".join(names[:NAMED])
                 + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")
                 for model, names in groups.items()]
        if self.hidden:
            parts.append(f"{self.hidden} more you may not see")
        total = len(self.dependents) + self.hidden
        return (f"{what[0].upper()}{what[1:]} cannot be deleted: it is still used by {'; '.join(parts)}. "
                f"Delete or move {'it' if total == 1 else 'them'} first.")

    def as_dict(self) -> dict:
        return {"detail": self.message, "used_by": [d.as_dict() for d in self.dependents],
                "used_by_hidden": self.hidden}


def _count(n: int, model: type[Model]) -> str:
    return f"{n} {model._meta.verbose_name if n == 1 else model._meta.verbose_name_plural}"


def in_use(error: ProtectedError | RestrictedError, obj: Model | None, user) -> InUse:
    """What ``error`` (raised deleting ``obj``) says still uses it, as ``user`` may see it."""
    blockers = error.protected_objects if isinstance(error, ProtectedError) else error.restricted_objects
    by_model: dict[type[Model], list[Model]] = defaultdict(list)
    for blocker in blockers:
        by_model[type(blocker)].append(blocker)
    dependents, hidden = [], 0
    for model, rows in sorted(by_model.items(), key=lambda item: item[0]._meta.label):
        manager = model._default_manager
        if hasattr(manager, "restrict"):  # one query per model, whatever the number of rows
            visible = set(manager.restrict(user).filter(pk__in=[r.pk for r in rows]).values_list("pk", flat=True))
        else:
            visible = {r.pk for r in rows} if user.is_staff else set()
        for row in sorted(rows, key=lambda r: r.pk):
            if row.pk in visible:
                dependents.append(Dependent(model, row.pk, str(row)))
            else:
                hidden += 1
    return InUse(obj, tuple(dependents), hidden)
