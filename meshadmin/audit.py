"""The audit log, written by signal receivers rather than by hand in views (NetBox's core/signals).

Every path that saves a model (pages, API, admin, bulk actions, tasks, the shell) goes through
``post_save``/``post_delete``/``m2m_changed``, so registering a model here is all it takes. The
actor and request id come from a ContextVar that the request middleware sets.

``QuerySet.update()`` sends no signal, so :func:`connect` wraps it: an update of a registered
model's audited fields reads the rows before and after and writes one entry per row changed,
whoever calls it (a view, a task, a related manager, Django's admin, the shell). Wrapping the
one method, rather than giving our querysets an ``update`` of their own, is what covers the
querysets that are not ours: Django's ``User`` (a staff grant by ``update()``), ``_base_manager``.
Updates that touch only fields the log leaves out (a token's ``last_used``) cost nothing extra.

Sign-ins and failed sign-ins are recorded from Django's ``user_logged_in`` and
``user_login_failed`` signals, with the client's address.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete, pre_save

from meshadmin.models import AuditEntry
from meshadmin.throttling import RETRY_AFTER_ATTRIBUTE, client_address


@dataclass(frozen=True)
class _Audited:
    exclude: frozenset[str]  # never written
    redact: frozenset[str]  # written as a keyed fingerprint: a change shows, the value does not


_REGISTRY: dict[type[models.Model], _Audited] = {}


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


def register(model: type[models.Model], *, exclude: tuple[str, ...] = (),
             redact: tuple[str, ...] = ()) -> type[models.Model]:
    """Audit every change of ``model``. ``exclude`` names fields never written to the log (key
    digests, bookkeeping); ``redact`` fields whose change is shown but not their value (a
    password hash: "changed", with a fingerprint that reveals nothing)."""
    _REGISTRY[model] = _Audited(frozenset(exclude), frozenset(redact))
    return model


def audited(*, exclude: tuple[str, ...] = (), redact: tuple[str, ...] = ()):
    def decorator(model):
        return register(model, exclude=exclude, redact=redact)

    return decorator


def _fingerprint(value: Any) -> str:
    if value in (None, ""):
        return ""
    mac = hmac.new(settings.SECRET_KEY.encode(), str(value).encode(), "sha256").hexdigest()
    return f"(redacted {mac[:8]})"


def snapshot(instance: models.Model, *, relations: bool = True) -> dict[str, Any]:
    """A JSON-safe picture of the instance: concrete fields, and many-to-many as sorted ids."""
    audited = _REGISTRY.get(type(instance), _Audited(frozenset(), frozenset()))
    data: dict[str, Any] = {}
    encoder = DjangoJSONEncoder()
    for f in instance._meta.concrete_fields:
        if f.name in audited.exclude:
            continue
        value = f.value_from_object(instance)
        if f.name in audited.redact:
            value = _fingerprint(value)
        elif value is not None and not isinstance(value, str | int | float | bool | dict | list):
            value = encoder.default(value)
        data[f.name] = value
    if relations and instance.pk is not None:
        for f in instance._meta.many_to_many:
            if f.name not in audited.exclude:
                data[f.name] = sorted(getattr(instance, f.name).values_list("pk", flat=True))
    return data


def _team_id(instance) -> int | None:
    team = getattr(instance, "owning_team", None)
    return team.pk if team is not None else None


_CONTEXT = object()  # "the actor of the audit context"


def _write(instance, action: str, before, after, *, model: type[models.Model] | None = None,
           object_id: str | None = None, object_repr: str | None = None, actor=_CONTEXT,
           actor_name: str | None = None):
    ctx = _context.get()
    if actor is _CONTEXT:
        actor = ctx.actor if ctx else None
    return AuditEntry.objects.create(
        actor=actor,
        actor_name=(actor_name or (actor.get_username() if actor else "system"))[:150],
        request_id=ctx.request_id if ctx else None,
        action=action,
        object_type=ContentType.objects.get_for_model(model or type(instance)),
        object_id=str(instance.pk) if object_id is None else object_id,
        object_repr=(str(instance) if object_repr is None else object_repr)[:250],
        team_id=_team_id(instance) if instance is not None else None,
        before=before,
        after=after,
    )


def record_action(instance: models.Model, action: str, **details: Any):
    """Audit an operator action that saves no model (redelivering dead letters, moving a consumer
    group to the end of its topic): an update entry on ``instance`` whose ``after`` names the
    action and its details (JSON-safe), attributed like any change. Called explicitly, since no
    signal fires; the one exception to "never by hand in views"."""
    return _write(instance, AuditEntry.UPDATE, None, {"action": action, **details})


def record_export(model: type[models.Model], object_id: str, object_repr: str, *, actor_name: str,
                  **details: Any):
    """Audit the export of something with its secrets (``manage.py mesh export-config
    --include-secrets``): who ran it, and what."""
    return _write(None, AuditEntry.EXPORT, None, details, model=model, object_id=object_id,
                  object_repr=object_repr, actor_name=actor_name)


def _on_logged_in(sender, request, user, **kwargs):
    _write(user, AuditEntry.LOGIN, None, {"address": client_address(request) if request else None},
           actor=user)


def _on_login_failed(sender, credentials, request=None, **kwargs):
    """A failed sign-in: on the account it named when there is one, with the address and why."""
    User = get_user_model()
    name = str(credentials.get(User.USERNAME_FIELD) or credentials.get("username") or "")
    user = User._default_manager.filter(**{User.USERNAME_FIELD: name}).first() if name else None
    throttled = request is not None and getattr(request, RETRY_AFTER_ATTRIBUTE, None)
    details = {"username": name[:150], "address": client_address(request) if request else None,
               "reason": "throttled: too many failures" if throttled else "wrong credentials"}
    _write(user, AuditEntry.LOGIN_FAILED, None, details, model=User, object_id=str(user.pk) if user else "",
           object_repr=name, actor=None, actor_name="anonymous")


def _audited_fields(model, names) -> bool:
    """Whether an update of ``names`` touches a field the log shows."""
    exclude = _REGISTRY[model].exclude
    for name in names:
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            return True  # update() itself will say what is wrong
        if field.name not in exclude:
            return True
    return False


def _wrap_update(update):
    """``QuerySet.update`` that writes an entry per row it changes, for registered models."""

    def audited_update(self, **kwargs):
        model = self.model
        if model not in _REGISTRY or not _audited_fields(model, kwargs):
            return update(self, **kwargs)
        base = model._base_manager.using(self.db)
        with transaction.atomic(using=self.db):
            pks = list(self.values_list("pk", flat=True))
            rows = base.select_for_update().filter(pk__in=pks).order_by("pk")
            before = {row.pk: snapshot(row, relations=False) for row in rows}
            count = update(self.filter(pk__in=pks), **kwargs)
            for row in base.filter(pk__in=pks).order_by("pk"):
                after = snapshot(row, relations=False)
                if before.get(row.pk) != after:
                    _write(row, AuditEntry.UPDATE, before.get(row.pk), after)
        return count

    audited_update.audited = True
    return audited_update


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


LOGGED_IN_UID = "meshadmin_audit_logged_in"


def connect() -> None:
    """Connect the receivers (again: each connection is once, by its dispatch uid)."""
    user_logged_in.connect(_on_logged_in, dispatch_uid=LOGGED_IN_UID)
    user_login_failed.connect(_on_login_failed, dispatch_uid="meshadmin_audit_login_failed")
    if not getattr(models.QuerySet.update, "audited", False):
        models.QuerySet.update = _wrap_update(models.QuerySet.update)
    pre_save.connect(_on_pre_save, dispatch_uid="meshadmin_audit_pre_save")
    post_save.connect(_on_post_save, dispatch_uid="meshadmin_audit_post_save")
    pre_delete.connect(_on_pre_delete, dispatch_uid="meshadmin_audit_pre_delete")
    post_delete.connect(_on_post_delete, dispatch_uid="meshadmin_audit_post_delete")
    m2m_changed.connect(_on_m2m_changed, dispatch_uid="meshadmin_audit_m2m")
