"""Topic catalog: does the cost of a list follow the page, not the catalog?

Seeds 100 topics, measures the median server time of the topic list page and of the API list
over repeated requests (in-process, through the whole middleware stack), then seeds 100,000
topics and measures again. Prints both medians per endpoint and, last, the worst ratio
large/small. Target: at most 1.5.

Runs on a fresh SQLite database in a temporary folder, or on DATABASE_URL when set (it creates
and drops a database of its own there through Django's test database machinery).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _runtime import private_data_dir, remove_data_dir  # noqa: E402

# A data folder of its own, removed at the end with the Redis the settings start in it (the
# pushes that seeding the catalog triggers stay there, away from the shared bench Redis).
DATA_DIR = private_data_dir()
os.environ["DJANGO_SETTINGS_MODULE"] = "meshadmin.settings.test"

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

REQUESTS = 40
ENDPOINTS = {"page": "/topics/", "api": "/api/v1/topics/"}


def seed(team, store, start: int, count: int) -> None:
    from topics.models import Topic

    domains = ["orders", "payments", "shipping", "inventory", "customers", "invoices", "refunds"]
    batch = [
        Topic(name=f"{domains[i % len(domains)]}.e{i:06d}", team=team, store=store,
              description=f"Event {i} of the {domains[i % len(domains)]} domain.")
        for i in range(start, start + count)
    ]
    Topic.objects.bulk_create(batch, batch_size=5000)


def median_ms(client: Client, url: str) -> float:
    client.get(url)  # warm caches and connections
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return statistics.median(times)


def main() -> None:
    from django.test.utils import get_runner

    from meshadmin.models import Membership, Team
    from topics.models import EventStore, Topic

    setup_test_environment()
    runner = get_runner(django.conf.settings)(verbosity=0, interactive=False)
    old_config = runner.setup_databases()
    try:
        team = Team.objects.create(name="Bench", slug="bench")
        user = User.objects.create_user("bench")
        Membership.objects.create(team=team, user=user, role=Membership.MEMBER)
        store = EventStore.objects.create(name="default")
        client = Client()
        client.force_login(user)

        seed(team, store, 0, 100)
        small = {name: median_ms(client, url) for name, url in ENDPOINTS.items()}
        seed(team, store, 100, 99_900)
        assert Topic.objects.count() == 100_000
        large = {name: median_ms(client, url) for name, url in ENDPOINTS.items()}
    finally:
        runner.teardown_databases(old_config)

    ratios = {}
    for name in ENDPOINTS:
        ratios[name] = large[name] / small[name]
        print(f"{name:5s} median  100 topics: {small[name]:7.2f} ms   100,000 topics: {large[name]:7.2f} ms   "
              f"ratio {ratios[name]:.2f}")
    print(f"ratio large/small (worst of page and API; target <= 1.5): {max(ratios.values()):.2f}")


if __name__ == "__main__":
    try:
        main()
    finally:
        remove_data_dir(DATA_DIR)
