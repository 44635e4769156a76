"""Demo data: three teams, their people, applications with keys, about fifty topics, rules and
subscriptions. Running it again changes nothing; it prints the logins.

``--engines kafka,nats,mqtt`` (``MESH_DEMO_STORES=all make demo``) puts one domain on each of
those engines (shipping on Kafka, customers on NATS JetStream), routes new orders from Redis to
both, subscribes the demo subscriber to all three, lets devices publish orders through MQTT and
delivers cancelled orders to an MQTT topic. Without it every topic is on the Redis store (topics
moved by an earlier run go back) and the MQTT subscription is paused."""

from __future__ import annotations

import json
import random
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from governance.models import AccessRule, Application, ApplicationKey, RoutingRule
from meshadmin.models import Membership, Team
from subscriptions.models import Subscription
from topics.models import EventStore, Tag, Topic

DEMO_PASSWORD = "meshadmin-demo"  # noqa: S105 - demo logins, printed on purpose

TEAMS = {
    "payments": ("Payments", "Takes the money: checkout, invoices, refunds."),
    "logistics": ("Logistics", "Moves the parcels: warehouses, carriers, tracking."),
    "identity": ("Identity", "Knows the customers: accounts, consent, sessions."),
}
PEOPLE = [  # username, team, role
    ("alice", "payments", Membership.OWNER),
    ("bob", "payments", Membership.MEMBER),
    ("dave", "payments", Membership.VIEWER),
    ("carol", "logistics", Membership.OWNER),
    ("erin", "identity", Membership.OWNER),
]
DOMAINS = {
    "payments": ["orders", "payments", "invoices", "refunds"],
    "logistics": ["shipping", "inventory", "warehouse"],
    "identity": ["customers", "sessions"],
}
EVENTS = ["created", "updated", "cancelled", "completed", "failed", "requested"]
APPLICATIONS = [  # name, team, description
    ("checkout", "payments", "The shop's checkout: publishes orders."),
    ("billing", "payments", "Invoices and payments."),
    ("shipping-service", "logistics", "Books carriers when orders arrive."),
    ("crm", "identity", "Customer records."),
]
#: The demo's stores beyond Redis: catalog name -> (kind, the domain that lives there, description)
ENGINE_STORES = {
    "kafka": ("kafka", "shipping", "Kafka (the Tansu broker the demo starts): the shipping domain."),
    "nats": ("nats", "customers", "NATS JetStream (the machine's): the customers domain."),
    "devices": ("mqtt", None, "Mosquitto (the machine's): devices publish orders, and receive cancellations."),
}
ENGINE_KINDS = {kind: name for name, (kind, _domain, _text) in ENGINE_STORES.items()}
# where cancelled orders go in the devices' broker: outside the root devices publish under (meshdemo/),
# which the checkout runtime ingests
MQTT_ALERTS = "meshdemo-out/orders-cancelled"
ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0},
                   "currency": {"type": "string", "minLength": 3, "maxLength": 3}},
}


def _indefinite(noun: str) -> str:
    """The noun with its indefinite article: ``an order``, ``a payment``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


class Command(BaseCommand):
    help = "Load the demo data (idempotent) and print the demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--subscriber-url", default="http://127.0.0.1:8100/hook",
                            help="Webhook URL of the demo subscriber (each subscription adds ?for=<app>).")
        parser.add_argument("--keys-file", default=str(settings.DATA_DIR / "demo-keys.json"),
                            help="Where the demo applications' plain keys are written (demo only).")
        parser.add_argument("--engines", default="",
                            help="Engines besides Redis the demo runs on, comma-separated: kafka, nats, mqtt.")

    @transaction.atomic
    def handle(self, *args, subscriber_url, keys_file, engines="", **options):
        engines = [e.strip() for e in engines.split(",") if e.strip()]
        unknown = set(engines) - set(ENGINE_KINDS)
        if unknown:
            raise CommandError(f"--engines: unknown {', '.join(sorted(unknown))} (known: kafka, nats, mqtt)")
        rng = random.Random(7)  # the same catalog every time  # noqa: S311
        store, _ = EventStore.objects.get_or_create(
            name="default", defaults={"description": "The Redis Streams store every runtime uses."})
        teams = {}
        for slug, (name, description) in TEAMS.items():
            teams[slug], _ = Team.objects.get_or_create(slug=slug, defaults={"name": name, "description": description})
        admin, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        if created:
            admin.set_password(DEMO_PASSWORD)
            admin.save()
        for username, team, role in PEOPLE:
            user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            Membership.objects.get_or_create(team=teams[team], user=user, defaults={"role": role})

        tags = {name: Tag.objects.get_or_create(name=name)[0] for name in ("pii", "eu", "core", "finance", "ops")}
        for team, domains in DOMAINS.items():
            for domain in domains:
                for event in EVENTS[: 5 + rng.randrange(2)]:
                    name = f"{domain}.{event}"
                    topic_tags = rng.sample(list(tags.values()), k=rng.randrange(3))  # drawn every run
                    topic, created = Topic.objects.get_or_create(name=name, defaults={
                        "team": teams[team], "store": store,
                        "description": f"{_indefinite(domain.rstrip('s')).capitalize()} was **{event}**. "
                                       f"Owned by {TEAMS[team][0]}.",
                        "retention_max_age": 7 * 24 * 3600, "retention_max_length": 100_000,
                        "data_schema": ORDER_SCHEMA if domain == "orders" else None,
                    })
                    if created:
                        topic.tags.set(topic_tags)
        Topic.objects.filter(name="orders.failed").update(lifecycle=Topic.DEPRECATED, sunset="2027-03-31")
        Topic.objects.get_or_create(name="audit.orders", defaults={
            "team": teams["payments"], "store": store, "description": "Every order event, copied by a route."})

        keys = {}
        for name, team, description in APPLICATIONS:
            app, _ = Application.objects.get_or_create(name=name, defaults={
                "team": teams[team], "description": description, "contact": f"{team}@example.com"})
            if not app.keys.filter(description="demo").exists():
                key = ApplicationKey(application=app, description="demo")
                keys[name] = key.generate()
                key.save()
        if keys:
            keys_path = Path(keys_file)
            existing = json.loads(keys_path.read_text()) if keys_path.exists() else {}
            keys_path.write_text(json.dumps({**existing, **keys}, indent=2))
            keys_path.chmod(0o600)

        apps = {a.name: a for a in Application.objects.all()}
        rules = [
            ("payments", AccessRule.APPLICATION, apps["checkout"], None, "orders.*", True, False, "allow"),
            ("payments", AccessRule.APPLICATION, apps["billing"], None, "payments.*", True, False, "allow"),
            ("payments", AccessRule.TEAM, None, teams["payments"], "invoices.*", True, True, "allow"),
            ("payments", AccessRule.APPLICATION, apps["checkout"], None, "orders.failed", True, False, "deny"),
        ]
        for team, kind, app, principal_team, pattern, publish, subscribe, effect in rules:
            AccessRule.objects.get_or_create(
                team=teams[team], principal_kind=kind, principal_application=app, principal_team=principal_team,
                topic_pattern=pattern, publish=publish, subscribe=subscribe, effect=effect,
                defaults={"description": "demo"})

        route, created = RoutingRule.objects.get_or_create(team=teams["payments"], source_pattern="orders.*",
                                                           defaults={"description": "Copy orders for audit."})
        if created:
            route.targets.set([Topic.objects.get(name="audit.orders")])

        for app, topic in (("shipping-service", "orders.created"), ("billing", "orders.completed")):
            Subscription.objects.get_or_create(
                application=apps[app], topic=Topic.objects.get(name=topic),
                state__in=Subscription.LIVE_STATES,
                defaults={"state": Subscription.ACTIVE, "webhook_url": f"{subscriber_url}?for={app}",
                          "reviewer_comment": "Approved for the demo."})
        self._place_on_engines(store, teams, apps, subscriber_url, engines)

        if engines:
            self.stdout.write(f"Stores: Redis, {', '.join(engines)} (Mesh → Event stores in the portal).")
        self.stdout.write(self.style.SUCCESS(
            f"Demo data ready: {Topic.objects.count()} topics, {Team.objects.count()} teams, "
            f"{Application.objects.count()} applications."))
        self.stdout.write(f"Log in as admin (staff), alice, bob, dave, carol or erin; password: {DEMO_PASSWORD}")

    def _place_on_engines(self, default: EventStore, teams, apps, subscriber_url: str, engines: list[str]) -> None:
        """One domain per engine, a route from Redis to both, a subscription on each (see the
        module's docstring); without engines, everything back on Redis."""
        stores = {}
        for name, (kind, domain, description) in ENGINE_STORES.items():
            stores[name], _ = EventStore.objects.get_or_create(
                name=name, defaults={"kind": kind, "connection": name, "description": description})
            if domain is not None:
                Topic.objects.filter(name__startswith=f"{domain}.").update(
                    store=stores[name] if kind in engines else default)
        wanted = [ENGINE_STORES[ENGINE_KINDS[kind]][1] for kind in engines if ENGINE_STORES[ENGINE_KINDS[kind]][1]]
        targets = {"kafka": "shipping.requested", "nats": "customers.updated"}
        route, created = RoutingRule.objects.get_or_create(
            team=teams["payments"], source_pattern="orders.created",
            defaults={"description": "New orders, copied to the shipping (Kafka) and customers (NATS) domains.",
                      "enabled": bool(wanted)})
        route.targets.set([Topic.objects.get(name=targets[kind]) for kind in engines if kind in targets])
        RoutingRule.objects.filter(pk=route.pk).update(enabled=bool(route.targets.exists()))
        for app, topic in (("shipping-service", "shipping.requested"), ("billing", "customers.updated")):
            Subscription.objects.get_or_create(
                application=apps[app], topic=Topic.objects.get(name=topic), state__in=Subscription.LIVE_STATES,
                defaults={"state": Subscription.ACTIVE, "webhook_url": f"{subscriber_url}?for={app}",
                          "reviewer_comment": "Approved for the demo: events from another engine."})
        mqtt, _ = Subscription.objects.get_or_create(
            application=apps["shipping-service"], topic=Topic.objects.get(name="orders.cancelled"),
            state__in=Subscription.LIVE_STATES,
            defaults={"state": Subscription.PAUSED, "mqtt_store": stores["devices"], "mqtt_topic": MQTT_ALERTS,
                      "delivery_mode": Subscription.STRUCTURED, "reviewer_comment": "Approved for the demo: to MQTT."})
        Subscription.objects.filter(pk=mqtt.pk).update(
            state=Subscription.ACTIVE if "mqtt" in engines else Subscription.PAUSED)
