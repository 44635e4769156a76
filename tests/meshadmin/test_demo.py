"""The demo data loads on an empty database and loading it again changes nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from governance.models import Application, ApplicationKey, RoutingRule
from meshadmin.demo import processes
from meshadmin.models import AuditEntry, Team
from meshruntime.config import seal, validate_document
from rollout.compiler import compile_mesh_config
from subscriptions.models import Subscription
from topics.models import Topic

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_writes_the_demo_keys(tmp_path, settings):
    keys_file = tmp_path / "demo-keys.json"
    settings.DATA_DIR = tmp_path
    call_command("seed_demo", keys_file=str(keys_file), stdout=io.StringIO())
    counts = (Topic.objects.count(), Team.objects.count(), Application.objects.count(),
              ApplicationKey.objects.count(), Subscription.objects.count())
    assert 45 <= counts[0] <= 60 and counts[1] == 3
    keys = json.loads(keys_file.read_text())
    assert set(keys) == set(Application.objects.values_list("name", flat=True))
    entries = AuditEntry.objects.count()

    out = io.StringIO()
    call_command("seed_demo", keys_file=str(keys_file), stdout=out)
    assert (Topic.objects.count(), Team.objects.count(), Application.objects.count(),
            ApplicationKey.objects.count(), Subscription.objects.count()) == counts
    assert AuditEntry.objects.count() == entries
    assert "password" in out.getvalue()


def test_the_demo_over_several_engines_puts_a_domain_on_each_and_routes_between_them(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    keys_file = str(tmp_path / "demo-keys.json")
    call_command("seed_demo", keys_file=keys_file, engines="kafka,nats,mqtt", stdout=io.StringIO())
    kinds = dict(Topic.objects.values_list("name", "store__kind"))
    assert {kinds[n] for n in kinds if n.startswith("shipping.")} == {"kafka"}
    assert {kinds[n] for n in kinds if n.startswith("customers.")} == {"nats"}
    assert kinds["orders.created"] == "redis"
    route = RoutingRule.objects.get(source_pattern="orders.created")
    assert route.enabled and sorted(route.targets.values_list("store__kind", flat=True)) == ["kafka", "nats"]
    live = Subscription.objects.filter(state=Subscription.ACTIVE)
    assert {s.topic.store.kind for s in live} == {"redis", "kafka", "nats"}  # the subscriber hears all three
    mqtt = Subscription.objects.get(mqtt_store__kind="mqtt")
    assert mqtt.state == Subscription.ACTIVE and mqtt.target_url == "mqtt://devices/meshdemo-out/orders-cancelled"
    doc = compile_mesh_config()
    validate_document(seal(doc, 1))  # runtimes take it

    call_command("seed_demo", keys_file=keys_file, stdout=io.StringIO())  # the plain demo again: Redis only
    assert set(Topic.objects.values_list("store__kind", flat=True)) == {"redis"}
    assert not RoutingRule.objects.get(source_pattern="orders.created").enabled
    assert Subscription.objects.get(mqtt_store__kind="mqtt").state == Subscription.PAUSED
    validate_document(seal(compile_mesh_config(), 2))


def test_the_demo_gives_the_runtimes_their_connections_and_devices_to_the_checkout(tmp_path):
    procs = processes(tmp_path, "redis://127.0.0.1:6379/0",
                      {"kafka": "kafka://127.0.0.1:9092", "devices": "mqtt://127.0.0.1:1883/meshdemo"})
    assert "--store kafka=kafka://127.0.0.1:9092 --store devices=mqtt://127.0.0.1:1883/meshdemo" in procs[
        "runtime-billing"]
    assert procs["runtime-checkout"].endswith("--mqtt-ingest devices")
    assert "--mqtt-ingest" not in procs["runtime-billing"]
    assert "--store " not in processes(tmp_path, "redis://127.0.0.1:6379/0")["runtime-billing"]
