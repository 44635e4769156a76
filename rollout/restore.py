"""Rollback: restore the database to a config version's content, then publish it.

The database is the source of truth (docs/architecture.md): publishing an old document over a
database that still says otherwise would be undone by the next unrelated change, attributed to
whoever made it. So a rollback to version N changes the rows until the database compiles to N's
content, as one audited change set, and the push that follows publishes it.

How rows are found. Every entry of a document has a stable identity that maps to a row: stores,
topics and applications by name, access rules, subscriptions and routing rules by primary key
(``rule-12``, ``sub-7``, ``route-3``). The restore compares the database's compile with N's
document (rollout.diff) and, model by model:

- an entry that changed gets N's values back on its row;
- an entry N has and the database does not: its row is brought back (a renamed topic or
  application takes its old name again; a disabled, unapproved or revoked rule or subscription
  routes or delivers again, which the restoring staff member approves, and the preview says so);
  a deleted row is created again from N's entry, with the fields a document does not carry
  (a topic's team, a rule's managing team, descriptions) from the audit log's last picture of it;
- an entry the database has and N does not: a row created since N is deleted; an older row is
  put back in the state the audit log shows it had at N (a rule is disabled, a subscription
  revoked, when the log does not know).

What cannot be restored exactly, is said so in the preview, never guessed silently:

- application keys are not restored. A key row keeps only a digest, and a key revoked (or
  deleted) since N may have leaked: giving it back its power would be a security decision, not a
  rollback. Keys created since N stay too, since applications use them; revoke them on the
  application's page if they must go. The preview lists every key difference that remains;
- a deleted row of which neither N's entry nor the audit log tells everything (a topic's owning
  team, say) is not recreated;
- a row that cannot be deleted because something still uses it stays.

The preview is the restore itself, run in a transaction that is rolled back: what it lists is
exactly what the restore will do, and the final compile shows what would still differ. The
confirmation carries the preview's fingerprint; if the database changed in between, the restore
refuses and shows the new preview.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone

from governance.models import AccessRule, Application, RoutingRule
from governance.rules import check_routing_source, rule_url
from meshadmin.audit import audit_context, current_request_id, record_action
from meshadmin.models import AuditEntry, Team
from meshruntime.config import ConfigError, seal, validate_document
from subscriptions.models import Subscription
from topics.models import EventStore, Topic

from . import push
from .compiler import compile_mesh_config
from .diff import SECTIONS, diff_documents
from .disclosure import redact
from .models import ConfigVersion

log = logging.getLogger(__name__)

CREATE, UPDATE, DELETE = "create", "update", "delete"
#: Values a preview does not show: a secret, and the time of an approval (which would make two
#: previews of the same restore differ).
HIDDEN, VOLATILE = frozenset({"signing_secret"}), frozenset({"reviewed_at"})
KEYS_NOTE = ("Application keys are not restored: a key row keeps only a digest, and a key revoked or deleted since "
             "may have leaked, so it stays revoked; keys created since stay active (revoke them on the "
             "application's page if they must go). Key differences that remain are listed below.")


class RestoreRefused(Exception):
    """The version cannot be restored (its document is gone, or its content would be refused)."""


class PlanChanged(Exception):
    """The database changed since the preview: the restore would not do what was previewed."""

    def __init__(self, plan: RestorePlan) -> None:
        super().__init__("The database changed since the preview; review the restore again.")
        self.plan = plan


@dataclass(frozen=True)
class RowChange:
    """One row the restore creates, changes or deletes."""

    action: str  # create, update, delete
    model: str  # verbose name: "topic", "access rule", …
    label: str  # the document's identity: "orders.created", "rule-12", …
    fields: tuple[tuple[str, Any, Any], ...] = ()  # (field, before, after), JSON-safe
    note: str = ""  # what a reader must know: an approval given, a row that could not be restored

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "model": self.model, "object": self.label, "note": self.note,
                "fields": [{"field": name, "before": before, "after": after} for name, before, after in self.fields]}


@dataclass
class RestorePlan:
    """What restoring ``target`` does (``changes``), what it cannot do (``notes``), and what would
    still differ from the version afterwards (``remaining``: a document diff, digests redacted)."""

    target: ConfigVersion
    changes: list[RowChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    remaining: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        text = json.dumps([change.as_dict() for change in self.changes], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)

    @property
    def summary(self) -> str:
        return (f"{self.count(CREATE)} created, {self.count(UPDATE)} changed, {self.count(DELETE)} deleted"
                if self.changes else "nothing to change")

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.target.version, "confirm": self.fingerprint, "summary": self.summary,
                "changes": [change.as_dict() for change in self.changes], "notes": list(self.notes),
                "remaining": self.remaining}


def _plain(value: Any) -> Any:
    """A value as a preview shows it (and JSON holds it): dates as text, rows by name."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, models.Model):
        return str(value)
    return value


def target_document(target: ConfigVersion) -> dict[str, Any]:
    """The version's document, or RestoreRefused when it was pruned."""
    document = ConfigVersion.objects.values_list("document", flat=True).get(pk=target.pk)
    if document is None:
        raise RestoreRefused(
            f"version {target.version} cannot be rolled back to: its document was pruned (only the newest "
            f"{settings.MESH_CONFIG_KEEP_DOCUMENTS} versions keep theirs)")
    return document


# --------------------------------------------------------------------------------------------
# The audit log's memory of rows


def _entries(model: type[models.Model]):
    return AuditEntry.objects.filter(object_type=ContentType.objects.get_for_model(model))


def snapshot_at(model: type[models.Model], pk: int, when: datetime) -> dict[str, Any] | None | bool:
    """The row as the audit log pictured it at ``when``: its snapshot, None if it was deleted
    then (or not yet created), False if the log does not know."""
    entry = _entries(model).filter(object_id=str(pk), time__lte=when).order_by("-time", "-pk").first()
    if entry is None:
        return False
    return None if entry.action == AuditEntry.DELETE else entry.after


def last_deleted(model: type[models.Model], *, pk: int | None = None, name: str | None = None) -> dict | None:
    """The last snapshot of a deleted row (by primary key, or by name), or None."""
    entries = _entries(model).filter(action=AuditEntry.DELETE)
    entries = entries.filter(object_id=str(pk)) if pk is not None else entries.filter(before__name=name)
    entry = entries.order_by("-time", "-pk").first()
    return entry.before if entry is not None else None


def renamed_row(model: type[models.Model], name: str, when: datetime):
    """A row that was called ``name`` at ``when`` and is called something else now, or None."""
    ids = set(_entries(model).filter(after__name=name).values_list("object_id", flat=True))
    for row in model.objects.filter(pk__in=[int(i) for i in ids if i.isdigit()]).exclude(name=name):
        picture = snapshot_at(model, row.pk, when)
        if picture and picture.get("name") == name:
            return row
    return None


# --------------------------------------------------------------------------------------------
# The restore


def _pk(ident: str) -> int:
    return int(ident.partition("-")[2])


class _Restorer:
    """Changes the rows (inside the caller's transaction) and records each change."""

    def __init__(self, target: ConfigVersion, document: dict[str, Any], user) -> None:
        self.target, self.doc, self.user = target, document, user
        self.when = target.created
        self.plan = RestorePlan(target)
        self.entries = {section: {item[identity]: item for item in document.get(section, ())}
                        for section, identity, _label in SECTIONS}

    # recording

    def record(self, action: str, obj: models.Model, label: str, fields=(), note: str = "") -> None:
        shown = tuple((name, "(redacted)" if name in HIDDEN and before is not None else _plain(before),
                       "(redacted)" if name in HIDDEN else _plain(after))
                      for name, before, after in fields if name not in VOLATILE)
        self.plan.changes.append(RowChange(action, obj._meta.verbose_name, label, shown, note))

    def note(self, text: str) -> None:
        self.plan.notes.append(text)

    def update(self, obj: models.Model, label: str, values: dict[str, Any], note: str = "") -> None:
        changed = [(name, getattr(obj, name), value) for name, value in values.items() if getattr(obj, name) != value]
        if not changed:
            return
        for name, _before, value in changed:
            setattr(obj, name, value)
        obj.save()
        self.record(UPDATE, obj, label, [(name.removesuffix("_id"), b, a) for name, b, a in changed], note)

    def create(self, model: type[models.Model], label: str, values: dict[str, Any], note: str = "") -> models.Model:
        obj = model.objects.create(**values)
        shown = [(name.removesuffix("_id"), None, value) for name, value in values.items() if value not in ("", None)]
        self.record(CREATE, obj, label, shown, note)
        return obj

    def delete(self, obj: models.Model, label: str, note: str = "") -> bool:
        try:
            with transaction.atomic():
                obj.delete()
        except ProtectedError as exc:
            used_by = ", ".join(sorted({str(o) for o in exc.protected_objects})[:5])
            self.note(f"{obj._meta.verbose_name.capitalize()} {label} is not in version {self.target.version} "
                      f"but stays: {used_by} still use{'s' if len(exc.protected_objects) == 1 else ''} it.")
            return False
        self.record(DELETE, obj, label, note=note)
        return True

    def created_since(self, obj: models.Model) -> bool:
        return obj.created > self.when

    def update_named(self, model: type[models.Model], name: str, values: dict[str, Any]) -> bool:
        """Set ``values`` on the row called ``name``, or on the one that was called so at the
        version's time and has been renamed since (renaming it back); False when there is none."""
        row = model.objects.filter(name=name).first() or renamed_row(model, name, self.when)
        if row is None:
            return False
        note = f"renamed back from {row.name}" if row.name != name else ""
        self.update(row, name, {"name": name, **values}, note=note)
        return True

    # the run

    def run(self) -> RestorePlan:
        # "added": N has it and the database has not; "removed": the reverse; "changed": both.
        wanted = diff_documents(compile_mesh_config(), self.doc)
        # Rules and subscriptions N has not go first: one of them may hold the place (one open
        # subscription per topic and application) of one that N has.
        for section, handler in (("routing_rules", self.remove_route), ("subscriptions", self.remove_subscription),
                                 ("access_rules", self.remove_access_rule)):
            for ident in wanted.get(section, {}).get("removed", ()):
                handler(ident)
        for section, handler in (("stores", self.store), ("topics", self.topic),
                                 ("applications", self.application), ("access_rules", self.access_rule),
                                 ("subscriptions", self.subscription), ("routing_rules", self.routing_rule)):
            entry = wanted.get(section, {})
            for ident in [*entry.get("added", ()), *(item["id"] for item in entry.get("changed", ()))]:
                handler(ident, self.entries[section][ident])
        # Named rows N has not, once renames are settled, most dependent first.
        extra = diff_documents(compile_mesh_config(), self.doc)
        for section, handler in (("applications", self.remove_application), ("topics", self.remove_topic),
                                 ("stores", self.remove_store)):
            for ident in extra.get(section, {}).get("removed", ()):
                handler(ident)
        final = compile_mesh_config()
        try:
            validate_document(seal(final, self.target.version))
        except ConfigError as error:
            raise RestoreRefused(f"the restored configuration would be refused by the runtimes: {error}") from None
        self.plan.remaining = redact(diff_documents(final, self.doc))
        self.note(KEYS_NOTE)
        return self.plan

    # stores and topics (by name)

    def store(self, name: str, entry: dict[str, Any]) -> None:
        if self.update_named(EventStore, name, {"kind": entry["kind"]}):
            return
        picture = last_deleted(EventStore, name=name) or {}
        self.create(EventStore, name, {"name": name, "kind": entry["kind"],
                                       "description": picture.get("description", "")})

    def _topic_values(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        store = EventStore.objects.filter(name=entry["store"]).first()
        if store is None:
            return None
        retention = entry.get("retention") or {}
        return {"store_id": store.pk, "lifecycle": entry["lifecycle"],
                "sunset": date.fromisoformat(entry["sunset"]) if entry.get("sunset") else None,
                "data_schema": entry.get("schema"), "retention_max_age": retention.get("max_age_seconds"),
                "retention_max_length": retention.get("max_length")}

    def topic(self, name: str, entry: dict[str, Any]) -> None:
        values = self._topic_values(entry)
        if values is None:
            self.note(f"Topic {name} is not restored: its store {entry['store']} could not be restored.")
            return
        if self.update_named(Topic, name, values):
            return
        picture = last_deleted(Topic, name=name)
        if picture is None or not Team.objects.filter(pk=picture.get("team")).exists():
            self.note(f"Topic {name} is not recreated: the audit log does not say which team owned it.")
            return
        topic = self.create(Topic, name, {"name": name, "team_id": picture["team"],
                                          "description": picture.get("description", ""),
                                          "example_event": picture.get("example_event"), **values},
                            note="recreated; team and description from the audit log")
        topic.tags.set(picture.get("tags") or [])

    # applications (by name)

    def application(self, name: str, entry: dict[str, Any]) -> None:
        team = Team.objects.filter(slug=entry["team"]).first()
        if team is None:
            self.note(f"Application {name} is not restored: its team {entry['team']} no longer exists.")
            return
        if self.update_named(Application, name, {"team_id": team.pk}):
            return
        picture = last_deleted(Application, name=name) or {}
        self.create(Application, name, {"name": name, "team_id": team.pk,
                                        "description": picture.get("description", ""),
                                        "contact": picture.get("contact", "")},
                    note="recreated without keys (keys are not restored)" if entry.get("keys") else "recreated")

    # access rules (rule-<pk>; the sub-<pk> grants follow their subscriptions)

    def _principal_values(self, rule: AccessRule | None, principals, picture: dict) -> dict[str, Any] | None:
        if principals == "*":
            return {"principal_kind": AccessRule.EVERYONE, "principal_application_id": None, "principal_team_id": None}
        wanted = sorted(principals)

        def apps_of(team_id) -> list[str]:
            return sorted(Application.objects.filter(team_id=team_id).values_list("name", flat=True))

        for team_id in (rule.principal_team_id if rule and rule.principal_kind == AccessRule.TEAM else None,
                        picture.get("principal_team") if picture.get("principal_kind") == AccessRule.TEAM else None):
            if team_id is not None and apps_of(team_id) == wanted:
                return {"principal_kind": AccessRule.TEAM, "principal_application_id": None,
                        "principal_team_id": team_id}
        if len(wanted) == 1:
            app = Application.objects.filter(name=wanted[0]).first()
            if app is not None:
                return {"principal_kind": AccessRule.APPLICATION, "principal_application_id": app.pk,
                        "principal_team_id": None}
        return None

    def access_rule(self, ident: str, entry: dict[str, Any]) -> None:
        if not ident.startswith("rule-"):
            return  # sub-<pk>: the grant of a subscription, restored with it
        pk = _pk(ident)
        row = AccessRule.objects.filter(pk=pk).first()
        picture = (snapshot_at(AccessRule, pk, self.when) or {}) if row else (last_deleted(AccessRule, pk=pk) or {})
        principals = self._principal_values(row, entry["principals"], picture)
        if principals is None:
            self.note(f"Access rule {ident} is not restored: its principals ({', '.join(entry['principals'])}) "
                      "are no application, and no team has exactly these applications now.")
            return
        values = {"topic_pattern": entry["topic"], "publish": "publish" in entry["actions"],
                  "subscribe": "subscribe" in entry["actions"], "effect": entry["effect"],
                  "description": entry.get("description", ""), **principals}
        if row is not None:
            self.update(row, ident, values)
            return
        team_id = picture.get("team")
        note = "recreated; its managing team from the audit log"
        if not Team.objects.filter(pk=team_id).exists():
            owner = Topic.objects.filter(name=entry["topic"]).values_list("team_id", flat=True).first()
            if owner is None:
                self.note(f"Access rule {ident} is not recreated: the audit log does not say which team managed it.")
                return
            team_id, note = owner, "recreated; managed by the team of its topic (the audit log does not say more)"
        self.create(AccessRule, ident, {"id": pk, "team_id": team_id, **values}, note=note)

    # subscriptions (sub-<pk>)

    def _subscription_values(self, entry: dict[str, Any]) -> dict[str, Any]:
        delivery = entry["delivery"]
        return {"state": entry["state"], "webhook_url": delivery["url"], "delivery_mode": delivery["mode"],
                "timeout_ms": delivery["timeout_ms"], "max_attempts": delivery["max_attempts"],
                "backoff_base_ms": delivery["backoff_base_ms"], "backoff_cap_ms": delivery["backoff_cap_ms"],
                "max_in_flight": delivery["max_in_flight"], "filters": entry.get("filters") or [],
                "signing_secret": entry["secret"]}

    def _approval(self) -> dict[str, Any]:
        return {"reviewed_by": self.user, "reviewed_at": timezone.now(),
                "reviewer_comment": f"Restored by the rollback to version {self.target.version}."}

    def subscription(self, ident: str, entry: dict[str, Any]) -> None:
        pk = _pk(ident)
        values = self._subscription_values(entry)
        row = Subscription.objects.filter(pk=pk).first()
        if row is not None:
            note = ""
            if row.state not in Subscription.LIVE_STATES:
                values.update(self._approval())
                note = f"it is {row.state} now: the rollback approves it again, as {self.user or 'system'}"
            self.update(row, ident, values, note=note)
            return
        topic = Topic.objects.filter(name=entry["topic"]).first()
        app = Application.objects.filter(name=entry["application"]).first()
        if topic is None or app is None:
            self.note(f"Subscription {ident} is not recreated: its topic or application could not be restored.")
            return
        picture = last_deleted(Subscription, pk=pk) or {}
        requester = get_user_model().objects.filter(pk=picture.get("requested_by")).values_list("pk", flat=True)
        self.create(Subscription, ident, {"id": pk, "topic_id": topic.pk, "application_id": app.pk,
                                          "requested_by_id": requester.first(), **values, **self._approval()},
                    note="recreated from the version (its signing secret too)")

    # routing rules (route-<pk>)

    def routing_rule(self, ident: str, entry: dict[str, Any]) -> None:
        pk = _pk(ident)
        row = RoutingRule.objects.filter(pk=pk).first()
        targets = list(Topic.objects.filter(name__in=entry["targets"]))
        if len(targets) != len(entry["targets"]):
            self.note(f"Routing rule {ident} is not restored: some of its targets could not be restored.")
            return
        team_id = row.team_id if row is not None else (last_deleted(RoutingRule, pk=pk) or {}).get("team")
        note = ""
        if not Team.objects.filter(pk=team_id).exists():
            teams = {t.team_id for t in targets}
            if len(teams) != 1:
                self.note(f"Routing rule {ident} is not recreated: the audit log does not say which team managed it.")
                return
            team_id, note = teams.pop(), "managed by the team of its targets (the audit log does not say more)"
        team = Team.objects.get(pk=team_id)
        try:
            source_team = check_routing_source(team, entry["source"])
        except ValidationError as error:
            self.note(f"Routing rule {ident} is not restored: {' '.join(error.messages)}")
            return
        values = {"source_pattern": entry["source"], "filters": entry.get("filters") or [], "order": entry["order"],
                  "enabled": True, "state": RoutingRule.APPROVED, "source_team_id": source_team.pk if source_team
                  else None}
        if row is None:
            if source_team is not None:
                values.update(self._approval())
            rule = self.create(RoutingRule, ident, {"id": pk, "team_id": team_id, **values},
                               note=note or "recreated; its managing team from the audit log")
            rule.targets.set(targets)
            return
        if source_team is not None and (row.state != RoutingRule.APPROVED or row.source_team_id != source_team.pk):
            values.update(self._approval())
            note = (f"it is {row.state} now: the rollback approves it again for {source_team}, as "
                    f"{self.user or 'system'}")
        before = sorted(row.targets.values_list("name", flat=True))
        self.update(row, ident, values, note=note)
        if before != sorted(entry["targets"]):
            row.targets.set(targets)
            self.record(UPDATE, row, ident, [("targets", before, sorted(entry["targets"]))])

    # what N does not have

    def remove_route(self, ident: str) -> None:
        row = RoutingRule.objects.filter(pk=_pk(ident)).first()
        if row is None:
            return
        if self.created_since(row):
            self.delete(row, ident, note=f"created after version {self.target.version}")
        else:
            self.update(row, ident, {"enabled": False}, note=f"it did not route in version {self.target.version}")

    def remove_subscription(self, ident: str) -> None:
        row = Subscription.objects.filter(pk=_pk(ident)).first()
        if row is None:
            return
        if self.created_since(row):
            self.delete(row, ident, note=f"created after version {self.target.version}")
            return
        picture = snapshot_at(Subscription, row.pk, self.when)
        state = picture.get("state") if picture else None
        if state in (None, *Subscription.LIVE_STATES):
            state, note = Subscription.REVOKED, (f"it did not deliver in version {self.target.version}; the audit "
                                                 "log does not say its state then")
        else:
            note = f"its state in version {self.target.version}"
        self.update(row, ident, {"state": state}, note=note)

    def remove_access_rule(self, ident: str) -> None:
        if not ident.startswith("rule-"):
            return  # a subscription's grant: gone with it
        row = AccessRule.objects.filter(pk=_pk(ident)).first()
        if row is not None and self.created_since(row):
            self.delete(row, ident, note=f"created after version {self.target.version}")

    def _remove_named(self, model, name: str) -> None:
        row = model.objects.filter(name=name).first()
        if row is None:
            return
        if self.created_since(row):
            self.delete(row, name, note=f"created after version {self.target.version}")
        else:
            self.note(f"{model._meta.verbose_name.capitalize()} {name} is not in version {self.target.version} "
                      "but existed before it (the audit log does not say it was renamed since): it stays.")

    def remove_application(self, name: str) -> None:
        self._remove_named(Application, name)

    def remove_topic(self, name: str) -> None:
        self._remove_named(Topic, name)

    def remove_store(self, name: str) -> None:
        self._remove_named(EventStore, name)


def _audited(user):
    """The audit context of the request, if there is one; else one that names ``user``."""
    return contextlib.nullcontext() if current_request_id() is not None else audit_context(user=user)


def preview(target: ConfigVersion, user) -> RestorePlan:
    """What :func:`restore` would do now: the restore itself, rolled back."""
    document = target_document(target)
    with _audited(user), transaction.atomic():
        plan = _Restorer(target, document, user).run()
        transaction.set_rollback(True)
    return plan


def restore(target: ConfigVersion, user, *, confirm: str) -> RestorePlan:
    """Restore the database to ``target``'s content, if that is still what the preview whose
    fingerprint is ``confirm`` showed (else :class:`PlanChanged`), as one audited change set:
    the rows' entries and one entry on the version, all with the same request id."""
    document = target_document(target)
    with _audited(user), transaction.atomic():
        plan = _Restorer(target, document, user).run()
        if plan.fingerprint != confirm:
            transaction.set_rollback(True)
            raise PlanChanged(plan)
        record_action(target, "restore", summary=plan.summary, fingerprint=plan.fingerprint,
                      changes=[change.as_dict() for change in plan.changes])
    return plan


@dataclass
class RollbackResult:
    plan: RestorePlan
    push: push.PushResult


def rollback(target: ConfigVersion, user, *, confirm: str, wait: float = 10.0) -> RollbackResult:
    """Restore the database to ``target``'s content and publish it as a new version (kind
    rollback), under the push lock so that no other push publishes the restore first."""
    with push.push_lock(wait):
        plan = restore(target, user, confirm=confirm)
        result = push.push(ConfigVersion.ROLLBACK, user=user, reason=f"Rollback to version {target.version}: "
                           f"database restored ({plan.summary})", rollback_of=target, lock_held=True)
    return RollbackResult(plan, result)


# --------------------------------------------------------------------------------------------
# Drift


@dataclass
class Drift:
    """What the database holds now that a version does not (or the reason it cannot be said)."""

    version: int | None
    sections: list[dict[str, Any]] = field(default_factory=list)
    unknown: str = ""

    @property
    def empty(self) -> bool:
        return not self.unknown and not self.sections


def _entry_url(section: str, ident: str) -> str | None:
    if section in ("access_rules", "subscriptions", "routing_rules"):
        return rule_url(ident)
    model = {"topics": Topic, "applications": Application, "stores": EventStore}[section]
    row = model.objects.filter(name=ident).only("pk").first()
    if row is None:
        return None
    names = {"topics": "topics:topic", "applications": "governance:application", "stores": "topics:eventstore"}
    return reverse(names[section], args=[row.pk])


def drift_since(version_number: int | None) -> Drift:
    """The objects changed since ``version_number`` (what a runtime that runs it does not have):
    the diff from its document to the database's compile now, each entry linked to its row."""
    if version_number is None:
        return Drift(None, unknown="This runtime has applied no configuration yet.")
    version = ConfigVersion.objects.filter(version=version_number).only("pk", "version", "pruned").first()
    if version is None:
        return Drift(version_number, unknown=f"Version {version_number} is not in the portal's records.")
    document = ConfigVersion.objects.values_list("document", flat=True).get(pk=version.pk)
    if document is None:
        return Drift(version_number, unknown=f"Version {version_number}'s document was pruned: the drift cannot be "
                                             "shown.")
    diff = redact(diff_documents(document, compile_mesh_config()))
    sections = []
    for section, _identity, label in SECTIONS:
        entry = diff.get(section)
        if not entry:
            continue
        items = [{"change": what, "id": ident, "url": _entry_url(section, ident)}
                 for what, idents in (("added", entry["added"]), ("removed", entry["removed"]),
                                      ("changed", [item["id"] for item in entry["changed"]]))
                 for ident in idents]
        sections.append({"label": label, "items": items})
    return Drift(version_number, sections)
