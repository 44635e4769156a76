"""Refusals, live: a real runtime refuses, the panels of the application, the topic and the home page
show who was refused where and why, to whom may see it."""

from __future__ import annotations

import argparse
import io

import pytest
from channels.db import database_sync_to_async
from django.core.management import call_command

from governance.models import Application
from meshruntime.app import Runtime, Settings
from meshruntime.config import seal
from meshruntime.demo import producer
from rollout.compiler import compile_mesh_config
from tests.portal_support.waiting import until
from tracing.consumers import CLOSE_NOT_FOUND, CLOSE_SIGNED_OUT
from tracing.hub import close_hub

from .conftest import order

pytestmark = pytest.mark.django_db(transaction=True)


def paths(mesh) -> dict[str, str]:
    return {"all": "/ws/tracing/refusals/",
            "topic": f"/ws/tracing/topics/{mesh.topics['orders.failed'].pk}/refusals/",
            "application": f"/ws/tracing/applications/{mesh.apps['checkout'].pk}/refusals/"}


async def test_a_deny_rule_refusal_shows_on_every_panel_it_belongs_to(live_runtime, sockets, bob):
    mesh = live_runtime.mesh
    panels = {scope: await sockets(path, bob) for scope, path in paths(mesh).items()}
    for scope, socket in panels.items():
        assert (await socket.expect("hello"))["scope"] == scope
    await live_runtime.refusals_watched(everything=True, topic="orders.failed", application="checkout")
    assert await live_runtime.publish("orders.failed", order(1)) == 403
    for socket in panels.values():
        [refusal] = (await socket.expect("refusals"))["refusals"]
        assert refusal["summary"] == "checkout refused on orders.failed by rule deny checkout publish orders.failed"
        assert refusal["rule"] == {"id": mesh.deny.rule_id, "label": "deny checkout publish orders.failed",
                                   "url": f"/accessrules/{mesh.deny.pk}/"}
        assert refusal["topic"] == {"name": "orders.failed", "url": f"/topics/{mesh.topics['orders.failed'].pk}/"}
        assert refusal["application"]["url"] == f"/applications/{mesh.apps['checkout'].pk}/"
        assert (refusal["reason"], refusal["status"], refusal["event_id"], refusal["events"]) == \
            ("forbidden", 403, "evt-1", 1)


async def test_a_schema_refusal_names_the_path_and_quotes_the_data_only_to_who_may_see_it(
        live_runtime, sockets, bob, carol):
    mesh = live_runtime.mesh
    member = await sockets(paths(mesh)["application"], bob)
    outsider = await sockets(paths(mesh)["application"], carol)
    await member.expect("hello")
    await outsider.expect("hello")
    await live_runtime.refusals_watched(application="checkout")
    bad = order(5, data={"order_id": "o-5", "amount": -1})
    assert await live_runtime.publish("orders.created", bad) == 400
    [seen] = (await member.expect("refusals"))["refusals"]
    [masked] = (await outsider.expect("refusals"))["refusals"]
    assert seen["summary"] == masked["summary"] == \
        "checkout refused on orders.created: its data does not match the topic's schema at data.amount"
    assert "-1 is less than the minimum of 0" in seen["message"]
    assert "message" not in masked and "-1" not in str(masked)


async def test_a_panel_opened_later_gets_what_its_process_kept(live_runtime, sockets, bob, alice):
    mesh = live_runtime.mesh
    first = await sockets(paths(mesh)["topic"], bob)
    await first.expect("hello")
    await live_runtime.refusals_watched(topic="orders.failed")
    await live_runtime.publish("orders.failed", order(1))
    await first.expect("refusals")
    later = await sockets(paths(mesh)["topic"], alice)
    kept = await later.expect("refusals")
    assert kept["kept"] is True and [r["event_id"] for r in kept["refusals"]] == ["evt-1"]


async def test_anonymous_and_unknown_scopes_are_closed_with_a_code(live_runtime, sockets, bob):
    assert await (await sockets("/ws/tracing/refusals/")).closed() == CLOSE_SIGNED_OUT
    assert await (await sockets("/ws/tracing/applications/999999/refusals/", bob)).closed() == CLOSE_NOT_FOUND
    socket = await sockets("/ws/tracing/refusals/", bob)
    await socket.expect("hello")
    await socket.send({"type": "filter"})
    assert (await socket.expect("error"))["message"] == "this socket takes no messages"


@pytest.mark.slow
async def test_the_demos_deliberate_refusals_show_with_their_reasons(redis_url, mesh_prefix, sockets, sam, tmp_path):
    """``make demo`` in small: the demo catalog, a runtime configured from it, the demo producer
    refusing on purpose; the checkout application's Refused panel says who, where and why."""
    keys_file = tmp_path / "demo-keys.json"

    def seed() -> tuple[dict, int]:
        call_command("seed_demo", keys_file=str(keys_file), stdout=io.StringIO())
        return seal(compile_mesh_config(), 1), Application.objects.get(name="checkout").pk

    doc, checkout = await database_sync_to_async(seed)()
    runtime = Runtime(Settings(store_url=redis_url, prefix=mesh_prefix, runtime_id="demo", tap_interval=0.1))
    runtime.apply_config(doc)
    await runtime.start()
    server = runtime.make_server()
    host, port = await server.start("127.0.0.1", 0)
    try:
        panel = await sockets(f"/ws/tracing/applications/{checkout}/refusals/", sam)
        await panel.expect("hello")
        await until(lambda: "checkout" in runtime.tap.refusal_applications, "the runtime to tap checkout's refusals")
        url = f"http://{host}:{port}"  # a gateway stands in for both demo sidecars
        args = argparse.Namespace(runtime=[f"checkout={url}", f"billing={url}"], key=None, keys_file=str(keys_file),
                                  rate=0, refusal_every=1, count=12, wait=10, seed=7)  # every one refused
        counts = await producer.run(args)
        assert counts["unexpected"] == 0 and counts["refused"] >= 1
        summaries: list[str] = []
        while len(summaries) < counts["refused"]:
            summaries += [r["summary"] for r in (await panel.expect("refusals"))["refusals"]]
        assert set(summaries) == {
            "checkout refused on orders.failed by rule deny checkout publish orders.failed",
            "checkout refused on payments.created: no access rule allows it (default deny)",
            "checkout refused on orders.created: its data does not match the topic's schema at data.amount"}
    finally:
        await server.shutdown()
        await runtime.stop()
        await close_hub()
