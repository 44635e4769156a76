"""One push or one reconcile recovers every runtime, whatever Redis announces.

A version number announced in Redis never goes down, and runtimes never fetch again a version
they refused for its content: so when Redis announces a damaged document, or a version the
database never recorded, only a valid document announced above it brings the runtimes back.
Each way of pushing is tried against a real ``python -m meshruntime`` that starts without a
cache while Redis announces such a document: it is not ready, then ready after the push.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from django.core.management import call_command
from django.urls import reverse

from meshruntime.config import seal
from meshruntime.config_publish import publish_document
from rollout import push
from rollout.models import ConfigVersion
from rollout.tasks import reconcile_config
from tests.portal_support.live_portal import wait_for
from tests.portal_support.mesh import build_mesh
from tests.portal_support.personas import client_for
from tests.portal_support.runtimes import RuntimeProcess

pytestmark = pytest.mark.django_db


@pytest.fixture
def mesh(db, mesh_redis, payments, logistics):
    return build_mesh()


def readiness(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as response:  # noqa: S310 - our runtime
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def new_runtime(redis_url, settings):
    """``new_runtime()`` starts a gateway without a cache, on this test's key prefix."""
    started: list[RuntimeProcess] = []

    def start() -> RuntimeProcess:
        process = RuntimeProcess(["--gateway", "--listen", "127.0.0.1:0", "--store-url", redis_url,
                                  "--config-redis-url", redis_url, "--prefix", settings.MESH_KEY_PREFIX,
                                  "--no-delivery-process", "--log-level", "WARNING"])
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def push_now_command() -> int:
    call_command("mesh", "push", "--force")
    return push.last_status()["version"]


def mesh_push_command() -> int:
    call_command("mesh", "push")
    return push.last_status()["version"]


def push_now_api(sam) -> int:
    response = client_for(sam).post("/api/v1/config-versions/push/")
    assert response.status_code == 200, response.content
    assert response.json()["outcome"] == "republished"
    return response.json()["version"]


def push_now_button(sam) -> int:
    response = client_for(sam).post(reverse("rollout:config_push"))
    assert response.status_code == 302
    return push.last_status()["version"]


def reconcile(sam) -> int:
    result = reconcile_config()
    assert result["outcome"] == "republished"
    return result["version"]


WAYS = {
    "mesh push --force": lambda sam: push_now_command(),
    "mesh push": lambda sam: mesh_push_command(),
    "the API": push_now_api,
    "the button": push_now_button,
    "reconcile": reconcile,
}


def corrupt_document_above(mesh_redis, prefix: str, good: dict, version: int) -> None:
    """A document whose content does not match its checksum, announced as ``version``."""
    tampered = {**seal(good, version), "topics": []}
    publish_document(mesh_redis, tampered, prefix, check=False)


@pytest.mark.parametrize("way", list(WAYS))
def test_one_push_or_reconcile_makes_a_new_runtime_ready_after_a_corrupt_higher_version(
        way, mesh, mesh_redis, settings, sam, new_runtime):
    prefix = settings.MESH_KEY_PREFIX
    assert push.push().version == 1
    good = ConfigVersion.objects.get(version=1)
    corrupt_document_above(mesh_redis, prefix, good.document, 7)

    runtime = new_runtime()
    status, body = wait_for(lambda: (r := readiness(runtime.url))[1]["config_error"] and r, 30,
                            "the runtime to refuse version 7")
    assert status == 503 and body["config_version"] is None
    assert body["config_error"].startswith("config version 7 refused: checksum:")

    version = WAYS[way](sam)

    assert version == 8
    status, body = wait_for(lambda: (r := readiness(runtime.url))[0] == 200 and r, 30, "the runtime to be ready")
    assert body["config_version"] == 8 and body["config_error"] is None
    again = ConfigVersion.objects.get(version=8)
    assert again.checksum == good.checksum and again.diff == {} and again.published_at is not None
    assert again.reason == ("version 1 published again as 8: Redis announces version 7, which the database "
                            "does not hold")
    assert int(mesh_redis.get(f"{prefix}config:latest")) == 8
    # A runtime started afterwards is ready as well, and the next reconcile leaves things be.
    later = new_runtime()
    wait_for(lambda: readiness(later.url)[0] == 200, 30, "a later runtime to be ready")
    assert reconcile_config() == {"outcome": "unchanged", "version": 8, "error": ""}


def test_a_snapshot_damaged_in_place_is_replaced_by_a_version_above_it(mesh, mesh_redis, settings, new_runtime):
    """Redis announces the database's newest version, but its snapshot is not what was recorded
    (overwritten): runtimes that refused it never fetch it again, so it goes out as a new version."""
    prefix = settings.MESH_KEY_PREFIX
    push.push()
    good = ConfigVersion.objects.get(version=1)
    mesh_redis.set(f"{prefix}config:1", b'{"version": 1, "not": "a document"}')
    runtime = new_runtime()
    wait_for(lambda: readiness(runtime.url)[1]["config_error"], 30, "the runtime to refuse version 1")

    assert reconcile_config() == {"outcome": "republished", "version": 2, "error": ""}
    assert ConfigVersion.objects.get(version=2).reason == (
        "version 1 published again as 2: Redis's snapshot of version 1 is not the one the database recorded")
    assert ConfigVersion.objects.get(version=2).checksum == good.checksum
    wait_for(lambda: readiness(runtime.url)[0] == 200, 30, "the runtime to be ready")


def test_a_redis_that_lost_everything_gets_the_same_version_again(mesh, mesh_redis, settings):
    push.push()
    for key in mesh_redis.scan_iter(match=f"{settings.MESH_KEY_PREFIX}config*"):
        mesh_redis.delete(key)
    assert reconcile_config() == {"outcome": "republished", "version": 1, "error": ""}
    assert ConfigVersion.objects.count() == 1
    assert push.push(force=True).as_dict() == {"outcome": "republished", "version": 1, "error": ""}
    assert ConfigVersion.objects.count() == 1
