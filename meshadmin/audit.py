"""The audit log, written by signal receivers rather than by hand in views (NetBox's core/signals).

Every path that saves a model (pages, API, admin, bulk actions, tasks, the shell) goes through
``post_save``/``post_delete``/``m2m_changed``, so registering a model here is all it takes. The
actor and request id come from a ContextVar that the request middleware sets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from meshadmin.models import AuditEntry

_REGISTRY: dict[type[models.Model], frozenset[str]] = {}


@dataclass
class AuditContext:
    request: Any = None  # the HttpRequest: its user is read late, after DRF authenticates
    user: Any = None
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def actor(self):
        user = self.user if self.user is not None else getattr(self.request, "user", None)
        return user if user is not None and user.is_authenticated else None


_context: ContextVar[AuditContext | None] = ContextVar("meshadmin_audit", default=None)


@contextmanager
def audit_context(*, request=None, user=None) -> Iterator[AuditContext]:
    """Attribute the changes made inside the block to ``request``'s user (or ``user``)."""
    ctx = AuditContext(request=request, user=user)
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


def current_request_id() -> uuid.UUID | None:
    ctx = _context.get()
    return ctx.request_id if ctx else None


def current_actor():
    """The signed-in user the changes made now are attributed to; None for the system (a task,
    a command, an anonymous request). The config push names the authors of a version with it."""
    ctx = _context.get()
    return ctx.actor if ctx else None


def register(model: type[models.Model], *, exclude: tuple[str, ...] = ()) -> type[models.Model]:
    """Audit every change of ``model``; ``exclude`` names fields never written to the log (secrets)."""
    _REGISTRY[model] = frozenset(exclude)
    return model


def audited(*, exclude: tuple[str, ...] = ()):
    def decorator(model):
        return register(model, exclude=exclude)

    return decorator


def snapshot(instance: models.Model) -> dict[str, Any]:
    """A JSON-safe picture of the instance: concrete fields, and many-to-many as sorted ids."""
    exclude = _REGISTRY.get(type(instance), frozenset())
    data: dict[str, Any] = {}
    encoder = DjangoJSONEncoder()
    for f in instance._meta.concrete_fields:
        if f.name in exclude:
            continue
        value = f.value_from_object(instance)
        if value is not None and not isinstance(value, str | int | float | bool | dict | list):
            value = encoder.default(value)
        data[f.name] = value
    if instance.pk is not None:
        for f in instance._meta.many_to_many:
            if f.name not in exclude:
                data[f.name] = sorted(getattr(instance, f.name).values_list("pk", flat=True))
    return data


def _team_id(instance) -> int | None:
    team = getattr(instance, "owning_team", None)
    return team.pk if team is not None else None


def _write(instance, action: str, before, after):
    ctx = _context.get()
    actor = ctx.actor if ctx else None
    return AuditEntry.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor else "system",
        request_id=ctx.request_id if ctx else None,
        action=action,
        object_type=ContentType.objects.get_for_model(type(instance)),
        object_id=str(instance.pk),
        object_repr=str(instance)[:250],
        team_id=_team_id(instance),
        before=before,
        after=after,
    )


def record_action(instance: models.Model, action: str, **details: Any):
    """Audit an operator action that saves no model (redelivering dead letters, moving a consumer
    group to the end of its topic): an update entry on ``instance`` whose ``after`` names the
    action and its details (JSON-safe), attributed like any change. Called explicitly, since no
    signal fires; the one exception to "never by hand in views"."""
    return _write(instance, AuditEntry.UPDATE, None, {"action": action, **details})


def _on_pre_save(sender, instance, raw=False, **kwargs):
    if sender not in _REGISTRY or raw or instance.pk is None:
        return
    current = sender._base_manager.filter(pk=instance.pk).first()
    instance._audit_before = snapshot(current) if current is not None else None


def _on_post_save(sender, instance, created, raw=False, **kwargs):
    if sender not in _REGISTRY or raw:
        return
    before = None if created else getattr(instance, "_audit_before", None)
    after = snapshot(instance)
    if not created and before == after:
        return  # nothing the log would show (e.g. a timestamp-only touch)
    action = AuditEntry.CREATE if created or before is None else AuditEntry.UPDATE
    instance._audit_entry = _write(instance, action, before, after)


def _on_pre_delete(sender, instance, **kwargs):
    if sender in _REGISTRY:
        instance._audit_before = snapshot(instance)


def _on_post_delete(sender, instance, **kwargs):
    if sender not in _REGISTRY:
        return
    _write(instance, AuditEntry.DELETE, getattr(instance, "_audit_before", None), None)


def _on_m2m_changed(sender, instance, action, reverse, **kwargs):
    model = type(instance)
    if model not in _REGISTRY or reverse:
        return
    if action in ("pre_add", "pre_remove", "pre_clear"):
        instance._audit_m2m_before = snapshot(instance)
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    after = snapshot(instance)
    entry = getattr(instance, "_audit_entry", None)
    if entry is not None:
        # The same save just wrote an entry: fold the relation change into it.
        entry.after = after
        entry.save(update_fields=["after"])
        return
    before = getattr(instance, "_audit_m2m_before", None)
    if before != after:
        instance._audit_entry = _write(instance, AuditEntry.UPDATE, before, after)


def connect() -> None:
    pre_save.connect(_on_pre_save, dispatch_uid="meshadmin_audit_pre_save")
    post_save.connect(_on_post_save, dispatch_uid="meshadmin_audit_post_save")
    pre_delete.connect(_on_pre_delete, dispatch_uid="meshadmin_audit_pre_delete")
    post_delete.connect(_on_post_delete, dispatch_uid="meshadmin_audit_post_delete")
    m2m_changed.connect(_on_m2m_changed, dispatch_uid="meshadmin_audit_m2m")
