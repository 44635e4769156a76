"""Config propagation: how long from a committed change to "every runtime applied it"?

Seeds 10,000 topics, 10,000 access rules and 2,000 subscriptions (with 200 applications, their
keys and 100 routing rules), then measures:

1. the compile: database → MeshConfig body → sealed → diffed → validated (what a push does
   before it publishes, after a change), median of several runs, with its parts;
2. propagation: a real Celery worker (a subprocess, as in production) and 100 ConfigWatchers in
   this process; each round commits a change to one access rule and times the moment the last
   watcher has applied a document with that change. The watchers validate every document, as
   runtimes do.

Prints the compile seconds, propagation p50 and p99, and last the ratio of propagation p99 to
the compile time. Targets: compile at most 0.5 s, propagation p99 at most 1 s.

Runs on a fresh SQLite file in a temporary folder (the worker must see it), or on DATABASE_URL
when set (a test database of its own there, through Django's test database machinery). Redis:
REDIS_URL, else the embedded one; keys under a prefix of its own, removed afterwards.

    .venv/bin/python benchmarks/propagation.py [--rounds 10] [--watchers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _runtime import default_redis_url, private_data_dir, remove_data_dir  # noqa: E402

# One Redis for every run (the shared bench-redis under data/, unless REDIS_URL says otherwise),
# rather than a new embedded one in each run's temporary folder, left running: so this comes
# before MESHADMIN_DATA_DIR points at that folder.
os.environ["REDIS_URL"] = default_redis_url()
DATA_DIR = private_data_dir()  # removed at the end
os.environ["DJANGO_SETTINGS_MODULE"] = "meshadmin.settings.test"
PREFIX = f"meshbench-{uuid.uuid4().hex[:8]}:"
os.environ["MESH_KEY_PREFIX"] = PREFIX
os.environ["MESH_PUSH_QUEUE"] = f"{PREFIX}push"

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402

TOPICS, RULES, SUBSCRIPTIONS, APPLICATIONS, ROUTES = 10_000, 10_000, 2_000, 200, 100


def seed() -> None:
    """Bulk inserts (no signals); the first push happens afterwards, explicitly."""
    from governance.models import AccessRule, Application, ApplicationKey, RoutingRule
    from meshadmin.models import Team
    from subscriptions.models import Subscription
    from topics.models import EventStore, Topic

    teams = Team.objects.bulk_create(Team(name=f"Team {i}", slug=f"team-{i}") for i in range(20))
    store = EventStore.objects.create(name="default")
    domains = ["orders", "payments", "shipping", "inventory", "customers", "invoices", "refunds", "audit"]
    schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
    Topic.objects.bulk_create(
        (Topic(name=f"{domains[i % len(domains)]}.e{i:05d}", team=teams[i % 20], store=store,
               data_schema=schema if i % 4 == 0 else None, retention_max_age=86400 if i % 3 else None,
               retention_max_length=100_000 if i % 5 == 0 else None) for i in range(TOPICS)),
        batch_size=2000,
    )
    topics = list(Topic.objects.order_by("pk"))
    apps = Application.objects.bulk_create(Application(name=f"app-{i:03d}", team=teams[i % 20])
                                           for i in range(APPLICATIONS))
    keys = []
    for app in apps:
        for _ in range(2):
            key = ApplicationKey(application=app)
            key.generate()
            keys.append(key)
    ApplicationKey.objects.bulk_create(keys)
    rules = []
    for i in range(RULES):
        # 70 % for one application, 20 % for a team, 10 % for everyone
        kind = AccessRule.APPLICATION if i % 10 < 7 else (AccessRule.TEAM if i % 10 < 9 else AccessRule.EVERYONE)
        pattern = topics[i % TOPICS].name if i % 3 else f"{domains[i % len(domains)]}.*"
        application = apps[i % APPLICATIONS] if kind == AccessRule.APPLICATION else None
        rules.append(AccessRule(team=teams[i % 20], principal_kind=kind, topic_pattern=pattern,
                                principal_application=application,
                                principal_team=teams[(i * 7) % 20] if kind == AccessRule.TEAM else None,
                                publish=i % 2 == 0, subscribe=i % 2 == 1 or i % 5 == 0,
                                effect=AccessRule.DENY if i % 50 == 0 else AccessRule.ALLOW))
    AccessRule.objects.bulk_create(rules, batch_size=2000)
    subs = [Subscription(topic=topics[(i * 5) % TOPICS], application=apps[i % APPLICATIONS],
                         state=Subscription.ACTIVE if i % 10 else Subscription.PAUSED,
                         webhook_url=f"http://app-{i % APPLICATIONS:03d}.internal/hooks/{i}",
                         filters=[{"prefix": {"type": "com.example."}}] if i % 2 else [])
            for i in range(SUBSCRIPTIONS)]
    Subscription.objects.bulk_create(subs, batch_size=2000)
    routes = RoutingRule.objects.bulk_create(RoutingRule(team=teams[i % 20], source_pattern=topics[i].name, order=i)
                                             for i in range(ROUTES))
    through = RoutingRule.targets.through
    through.objects.bulk_create(through(routingrule_id=route.pk, topic_id=topics[TOPICS - 1 - i].pk)
                                for i, route in enumerate(routes))


def measure_compile(runs: int = 5) -> dict[str, float]:
    """What a push does before it publishes, after one access rule changed: compile (queries),
    seal (the checksum), diff against the previous version, validate the changed part. Also the
    validation of the whole document, which the first push of a process does."""
    from governance.models import AccessRule
    from meshruntime.config import seal, validate_document
    from rollout.push import compile_snapshot, gc_paused

    previous = seal(compile_snapshot(), 1)
    validate_document(previous)
    rule = AccessRule.objects.order_by("pk").first()
    parts: dict[str, list[float]] = {"query": [], "seal": [], "diff": [], "validate": [], "total": [], "whole": []}
    for run in range(runs):
        rule.description = f"compile run {run}"
        rule.save()
        with gc_paused():  # as push() does
            timed = _timed_compile(previous)
        for name, value in timed.items():
            parts[name].append(value)
    return {name: statistics.median(values) for name, values in parts.items()}


def _timed_compile(previous: dict) -> dict[str, float]:
    """One compile as push() makes it, in parts (seconds)."""
    from meshruntime.config import seal, validate_document
    from rollout.diff import diff_documents
    from rollout.push import compile_snapshot, validate

    t0 = time.perf_counter()
    body = compile_snapshot()
    t1 = time.perf_counter()
    doc = seal(body, 2)
    t2 = time.perf_counter()
    diff = diff_documents(previous, doc)
    t3 = time.perf_counter()
    validate(doc, previous, diff)
    t4 = time.perf_counter()
    validate_document(doc)
    t5 = time.perf_counter()
    return {"query": t1 - t0, "seal": t2 - t1, "diff": t3 - t2, "validate": t4 - t3, "total": t4 - t0,
            "whole": t5 - t4}


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}:{s['PASSWORD']}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


def start_worker() -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "meshadmin", "worker", "--pool=solo", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "-Q", settings.MESH_PUSH_QUEUE, "-l", "warning"],
        cwd=ROOT, env=env,
    )
    return worker


class Watchers:
    """``count`` ConfigWatchers on one event loop in a background thread."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.loop = asyncio.new_event_loop()
        self.watchers: list = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        from meshruntime.config_watcher import ConfigWatcher

        self.thread.start()

        async def start_all():
            for _ in range(self.count):
                # freeze: as in a runtime process (meshruntime.app)
                watcher = ConfigWatcher(settings.REDIS_URL, prefix=PREFIX, poll_interval=3.0, freeze=True)
                await watcher.start()
                self.watchers.append(watcher)

        asyncio.run_coroutine_threadsafe(start_all(), self.loop).result()

    def wait_all(self, predicate, timeout: float = 600.0) -> tuple[float, float]:
        """Block until every watcher's current document satisfies ``predicate``; return when the
        first and when the last did."""

        async def one(watcher):
            await watcher.wait_until(lambda: watcher.current is not None and predicate(watcher.current))
            return time.perf_counter()

        async def wait():
            done = await asyncio.gather(*(one(w) for w in self.watchers))
            return min(done), max(done)

        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(wait(), timeout), self.loop).result()

    def stop(self) -> None:
        async def stop_all():
            await asyncio.gather(*(w.stop() for w in self.watchers))

        asyncio.run_coroutine_threadsafe(stop_all(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)


def holds(doc: dict, rule_id: str, description: str) -> bool:
    """Whether ``doc`` has the rule with that description (rules are sorted by id: a bisection,
    so that checking 100 watchers costs the measurement nothing)."""
    rules = doc["access_rules"]
    at = bisect.bisect_left(rules, rule_id, key=lambda rule: rule["id"])
    return at < len(rules) and rules[at]["id"] == rule_id and rules[at]["description"] == description


def measure_propagation(rounds: int, count: int) -> tuple[list[float], list[float]]:
    """Per round: seconds from the commit to the last watcher's apply, and to the first's."""
    from django.utils import timezone

    from governance.models import AccessRule
    from rollout import push
    from rollout.models import ConfigVersion

    result = push.push()
    assert result.outcome == "published", result
    watchers = Watchers(count)
    watchers.start()
    watchers.wait_all(lambda doc: doc["version"] >= result.version)
    worker = start_worker()
    rule = AccessRule.objects.order_by("pk").first()
    last, first = [], []
    try:
        for i in range(rounds + 1):
            marker = f"bench round {i}"
            rule.description = marker
            committed = timezone.now()
            started = time.perf_counter()
            rule.save()  # autocommit: the commit hook runs at once
            earliest, done = watchers.wait_all(lambda doc, marker=marker: holds(doc, rule.rule_id, marker))
            if i:  # the first round warms the worker up (imports, connections)
                last.append(done - started)
                first.append(earliest - started)
            version = ConfigVersion.objects.order_by("-version").first()
            print(f"  round {i:2d}: published {(version.published_at - committed).total_seconds():6.3f} s, "
                  f"first watcher {earliest - started:6.3f} s, all {done - started:6.3f} s", file=sys.stderr)
    finally:
        worker.terminate()
        worker.wait(30)
        watchers.stop()
    return last, first


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--watchers", type=int, default=100)
    args = parser.parse_args()

    import redis
    from django.test.utils import get_runner, setup_test_environment

    if connection.vendor == "sqlite":  # a file, so that the worker process sees it
        connection.settings_dict["TEST"]["NAME"] = str(Path(os.environ["MESHADMIN_DATA_DIR"]) / "bench.sqlite3")
    setup_test_environment()
    runner = get_runner(settings)(verbosity=0, interactive=False)
    old_config = runner.setup_databases()
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        started = time.perf_counter()
        seed()
        print(f"seeded in {time.perf_counter() - started:.1f} s ({connection.vendor})", file=sys.stderr)
        compile_times = measure_compile()
        times, first = measure_propagation(args.rounds, args.watchers)
    finally:
        runner.teardown_databases(old_config)
        for key in client.scan_iter(match=f"*{PREFIX}*", count=1000):
            client.delete(key)

    p50, p99 = statistics.median(times), percentile(times, 0.99)
    c = compile_times
    print(f"compile: query {c['query']:.3f} s + seal {c['seal']:.3f} s + diff {c['diff']:.3f} s + validate the "
          f"changed part {c['validate']:.3f} s (the whole document: {c['whole']:.3f} s)")
    print(f"compile seconds (target <= 0.5): {compile_times['total']:.3f}")
    print(f"propagation to the first watcher: p50 {statistics.median(first):.3f} s, "
          f"p99 {percentile(first, 0.99):.3f} s")
    print(f"propagation to all {args.watchers} watchers over {len(times)} changes: p50 {p50:.3f} s, "
          f"p99 {p99:.3f} s (target p99 <= 1)")
    print(f"ratio propagation p99 / compile: {p99 / compile_times['total']:.2f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        remove_data_dir(DATA_DIR)
