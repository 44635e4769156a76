"""Config versions and runtimes: the rollout's records of the MeshConfig contract.

A :class:`ConfigVersion` is one published document with who changed what and the diff to the
version before (rollout.push writes them); a :class:`Runtime` is a mesh runtime as its
heartbeats describe it (rollout.registry writes them). Both moved here from ``governance`` with
their tables renamed (migrations ``governance.0005`` and ``rollout.0001``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from meshadmin.querysets import RestrictedQuerySet

from .diff import summarize
from .fields import DocumentField


class ConfigVersionQuerySet(RestrictedQuerySet):
    """Every signed-in user sees the versions (their diffs name no secret); only staff push
    or roll back (``restrict(user, CHANGE)`` is empty for everyone else)."""

    visible_to_all = True


class ConfigVersion(models.Model):
    """One published MeshConfig document: what was pushed, when, by whom, and what changed.

    ``checksum`` is the content's checksum. ``source_checksum`` is the checksum of the database's
    compile that this version answers: equal to ``checksum`` since a rollback restores the
    database (rollout.restore); the rollbacks of old published a version's content over the
    database, and answered the overridden compile. The automatic push compares a new compile
    with it.
    """

    PUSH, MANUAL, ROLLBACK, RECONCILE = "push", "manual", "rollback", "reconcile"
    KIND_CHOICES = [(PUSH, "Change"), (MANUAL, "Push now"), (ROLLBACK, "Rollback"), (RECONCILE, "Reconcile")]

    version = models.PositiveIntegerField(unique=True)
    checksum = models.CharField(max_length=64)
    source_checksum = models.CharField(max_length=64)
    # None once pruned (MESH_CONFIG_KEEP_DOCUMENTS): the record stays, the content does not
    document = DocumentField(null=True)
    pruned = models.BooleanField(default=False, help_text="The document was dropped to save space.")
    kind = models.CharField(max_length=10, choices=KIND_CHOICES, default=PUSH)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    actor_name = models.CharField(max_length=250, blank=True, help_text="Who made the changes, or 'system'.")
    reason = models.CharField(max_length=500, blank=True)
    changes = models.JSONField(default=list, blank=True, help_text="The committed changes that led to it.")
    diff = models.JSONField(default=dict, blank=True, help_text="Added, removed and changed entries.")
    published_at = models.DateTimeField(null=True, blank=True)
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="rollbacks")

    objects = ConfigVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-version"]
        verbose_name = "config version"

    def __str__(self) -> str:
        return f"version {self.version}"

    def get_absolute_url(self) -> str:
        return reverse("rollout:configversion", args=[self.pk])

    @property
    def owning_team(self):
        return None

    @property
    def summary(self) -> str:
        return summarize(self.diff)

    @staticmethod
    def can_push(user) -> bool:
        """Push now and rollback: staff only (a push affects every team's runtimes)."""
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class RuntimeQuerySet(RestrictedQuerySet):
    visible_to_all = True  # what runs where is operational information for every signed-in user


class Runtime(models.Model):
    """A mesh runtime as its heartbeats describe it (written by ``rollout.registry``)."""

    HEALTHY, STALE, GONE = "healthy", "stale", "gone"
    IN_SYNC, BEHIND, ERROR, UNKNOWN = "in_sync", "behind", "error", "unknown"

    runtime_id = models.CharField(max_length=200, unique=True)
    application = models.CharField(max_length=100, blank=True, help_text="Empty for a gateway.")
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    software_version = models.CharField(max_length=100, blank=True)
    config_version = models.PositiveIntegerField(null=True, blank=True)
    config_checksum = models.CharField(max_length=64, blank=True)
    last_error = models.TextField(blank=True)
    counters = models.JSONField(default=dict, blank=True)
    # the runtime's own journey options (not part of the document); None: not reported
    journey_sample_rate = models.FloatField(null=True, blank=True,
                                            help_text="Share of events whose journey it records.")
    journey_ttl_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds it keeps a journey.")
    metrics_url = models.CharField(max_length=500, blank=True,
                                   help_text="Where Prometheus scrapes the runtime (from its heartbeats).")
    # per catalog store named by its applied config: kind, connection, state (reachable,
    # unreachable, missing) and, when missing, why (meshruntime.store.storeset)
    stores = models.JSONField(default=dict, blank=True)
    # its --max-config-bytes; None: not reported (an older runtime). A push over the smallest is
    # refused (rollout.limits)
    max_config_bytes = models.PositiveBigIntegerField(null=True, blank=True,
                                                      help_text="The longest configuration document it reads.")
    started_at = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    objects = RuntimeQuerySet.as_manager()

    class Meta:
        ordering = ["application", "host", "runtime_id"]

    def __str__(self) -> str:
        return self.runtime_id

    def get_absolute_url(self) -> str:
        return reverse("rollout:runtime", args=[self.pk])

    @property
    def owning_team(self):
        return None

    @property
    def missing_stores(self) -> list[tuple[str, str]]:
        """(store, why) for each store of its config this runtime cannot use: its topics get 503."""
        stores = self.stores if isinstance(self.stores, dict) else {}
        return sorted((name, str(entry.get("error", ""))) for name, entry in stores.items()
                      if isinstance(entry, dict) and entry.get("state") == "missing")

    def state_at(self, now=None) -> str:
        """healthy, stale (silent for MESH_RUNTIME_STALE_SECONDS) or gone (MESH_RUNTIME_GONE_SECONDS)."""
        silent = ((now or timezone.now()) - self.last_seen).total_seconds()
        if silent >= settings.MESH_RUNTIME_GONE_SECONDS:
            return self.GONE
        if silent >= settings.MESH_RUNTIME_STALE_SECONDS:
            return self.STALE
        return self.HEALTHY

    @property
    def state(self) -> str:
        return self.state_at()

    def sync_with(self, latest_version: int | None) -> str:
        """in_sync, behind or error against the newest published version (unknown before any)."""
        if self.last_error:
            return self.ERROR
        if latest_version is None or self.config_version is None:
            return self.UNKNOWN if latest_version is None else self.BEHIND
        return self.IN_SYNC if self.config_version >= latest_version else self.BEHIND
