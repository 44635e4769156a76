"""ConfigVersion and Runtime moved from governance to rollout: a database made before the move
keeps every row, and the audit log still finds the objects it names.

The test migrates this test database back to the state before the move, writes rows with the
models of that state, migrates forward and reads them with today's models (on whichever
database the suite runs: SQLite, or PostgreSQL with DATABASE_URL).
"""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from meshadmin.models import AuditEntry
from rollout.models import ConfigVersion, Runtime

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_THE_MOVE = [("governance", "0004_configversion_pruned"), ("rollout", None)]
DOCUMENT = {"format": 1, "version": 1, "checksum": "c" * 64, "topics": [{"name": "orders.created"}],
            "subscriptions": [{"id": "sub-1", "secret": "whsec_x"}]}


def migrate(targets):
    """Migrate the test database to ``targets``; return the models of that state."""
    return MigrationExecutor(connection).migrate(targets).apps


@pytest.fixture
def before_the_move():
    """The models as they were before the move; the database migrated forward again afterwards,
    whatever the test did."""
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        yield migrate(BEFORE_THE_MOVE)
    finally:
        migrate(latest)
        ContentType.objects.clear_cache()


def test_rows_made_before_the_move_are_read_by_the_rollout_models(before_the_move):
    old = before_the_move
    user = old.get_model("auth", "User").objects.create(username="sam", is_staff=True)
    OldVersion = old.get_model("governance", "ConfigVersion")
    first = OldVersion.objects.create(version=1, checksum="c" * 64, source_checksum="c" * 64, document=DOCUMENT,
                                      kind="push", created_by=user, actor_name="sam", reason="topics: 1 added",
                                      changes=[{"action": "create", "type": "topic"}],
                                      diff={"topics": {"added": ["orders.created"], "removed": [], "changed": []}},
                                      published_at=timezone.now())
    OldVersion.objects.create(version=2, checksum="c" * 64, source_checksum="d" * 64, document=None, pruned=True,
                              kind="rollback", rollback_of=first)
    old.get_model("governance", "Runtime").objects.create(runtime_id="billing-1", application="billing",
                                                           host="node-1", config_version=2, counters={"published": 7})
    version_type = old.get_model("contenttypes", "ContentType").objects.get_or_create(app_label="governance",
                                                                                      model="configversion")[0]
    old.get_model("meshadmin", "AuditEntry").objects.create(action="update", object_type=version_type,
                                                            object_id=str(first.pk), object_repr="version 1",
                                                            actor_name="sam")

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    ContentType.objects.clear_cache()

    v1, v2 = ConfigVersion.objects.order_by("version")
    assert (v1.pk, v1.document, v1.created_by.username, v1.changes, v1.diff["topics"]["added"]) == \
        (first.pk, DOCUMENT, "sam", [{"action": "create", "type": "topic"}], ["orders.created"])
    assert (v2.rollback_of, v2.document, v2.pruned, v2.kind) == (v1, None, True, ConfigVersion.ROLLBACK)
    runtime = Runtime.objects.get()
    assert (runtime.runtime_id, runtime.config_version, runtime.counters) == ("billing-1", 2, {"published": 7})
    entry = AuditEntry.objects.get()
    assert entry.object_type.model_class() is ConfigVersion and entry.object_type.app_label == "rollout"
    assert not ContentType.objects.filter(app_label="governance", model__in=["configversion", "runtime"]).exists()
    # The tables go on numbering where they were.
    assert ConfigVersion.objects.create(version=3, checksum="e" * 64, source_checksum="e" * 64).pk > v2.pk
