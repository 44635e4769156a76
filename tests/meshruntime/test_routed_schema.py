"""A copy that a routing rule makes into a topic with a schema passes that schema, as a direct
publish there would (issue 13, item 2). The producer is not refused for somebody else's rule: its
event is stored, the copy is dropped, counted, recorded in the event's journey with the schema
path, and reported for the routing rule's page.

A whole runtime on the real Redis: ``orders.created`` (its schema needs ``order_id``) is routed by
``route-1`` into ``audit.orders``, whose schema also needs an integer ``amount``.
"""

from __future__ import annotations

import copy

import orjson
from factories import ORDER_SCHEMA, access_rule, key_for, make_config, routing_rule, topic
from runtime_harness import event, running_runtime

from meshruntime.state import MeshState
from tests.portal_support.waiting import until

AUDIT_SCHEMA = {"type": "object", "required": ["order_id", "amount"],
                "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"}}}


def doc(**overrides):
    return make_config(topics=[topic("audit.orders", schema=AUDIT_SCHEMA),
                               topic("orders.created", schema=copy.deepcopy(ORDER_SCHEMA)), "orders.shipped"],
                       access_rules=[access_rule("rule-1", ["billing"], "*", ["publish"])], **overrides)


async def test_a_copy_that_fails_the_target_schema_is_dropped_and_the_event_stored(redis_url, key_prefix,
                                                                                    redis_client, keys):
    async with running_runtime(redis_url, key_prefix, doc=doc()) as h:
        fits = event(1, data={"order_id": "o-1", "amount": 12})
        fails = event(2, data={"order_id": "o-2", "amount": 12.5})  # a number, not the integer audit wants
        response = await h.publish_batch("orders.created", [fits, fails])
        assert response.status == 202, await response.text()  # the producer is not refused
        assert [e["id"] for e in h.stored("orders.created")] == ["evt-1", "evt-2"]
        assert [e["id"] for e in h.stored("audit.orders")] == ["evt-1"]  # the failing copy is not there

        # a direct publish of the same event is refused: the copy now obeys the same schema
        direct = await h.publish("audit.orders", fails)
        assert direct.status == 400
        assert (await direct.json())["path"] == "data.amount"
        metrics = await (await h.client.get("/metrics")).text()
        assert ('meshruntime_routed_copies_refused_total{reason="schema_mismatch",rule="route-1",'
                'target="audit.orders"} 1.0') in metrics
        assert 'meshruntime_routed_copies_total{rule="route-1",topic="orders.created"} 1.0' in metrics

        steps = h.journey("evt-2")
        refused = [s for s in steps if s["step"] == "copy_refused"]
        assert len(refused) == 1 and not any(s["step"] == "routed" for s in steps)
        assert refused[0] | {"at": 0, "message": ""} == {
            "step": "copy_refused", "at": 0, "runtime": "test-runtime", "rule": "route-1",
            "source": "orders.created", "target": "audit.orders", "reason": "schema_mismatch",
            "path": "data.amount", "message": ""}
        assert "12.5 is not of type 'integer'" in refused[0]["message"]
        assert [s["step"] for s in steps if s["step"] == "stored"] == ["stored"]  # the event, not a copy
        assert {"routed", "copy_refused"} & {s["step"] for s in h.journey("evt-1")} == {"routed"}

        def report():
            fields = redis_client.hgetall(keys.routing("route-1"))
            return {k.decode(): v.decode() for k, v in fields.items()}

        got = await until(report, "the rule's report")
        assert got["refused"] == "1" and got["refused:audit.orders:schema_mismatch"] == "1"
        assert (got["last_event_id"], got["last_source"], got["last_target"], got["last_path"],
                got["last_keyword"]) == ("evt-2", "orders.created", "audit.orders", "data.amount", "type")
        assert "12.5" not in orjson.dumps(got).decode()  # the report quotes nothing of the data
        assert 0 < redis_client.ttl(keys.routing("route-1")) <= 7 * 24 * 3600

        response = await h.publish("orders.created", event(3, data={"order_id": "o-3"}))  # no amount at all
        assert response.status == 202
        await until(lambda: report().get("refused") == "2", "the second refusal reported")
        assert report()["last_path"] == "data" and report()["last_keyword"] == "required"
        beat = h.runtime.metrics.counters()
        assert beat["routed_refused"] == 2 and beat["routed"] == 1


async def test_binary_data_that_is_not_json_is_not_copied_into_a_topic_with_a_schema(redis_url, key_prefix):
    config = make_config(topics=["orders.created", topic("audit.orders", schema=AUDIT_SCHEMA)],
                         routing_rules=[routing_rule("route-1", "orders.*", ["audit.orders"])])
    async with running_runtime(redis_url, key_prefix, doc=config) as h:
        response = await h.client.post("/v1/topics/orders.created/events", data=b"\x00\x01 not json", headers={
            "Authorization": f"Bearer {key_for('billing')}",
            "Content-Type": "application/octet-stream", "ce-specversion": "1.0", "ce-id": "bin-1",
            "ce-source": "/billing", "ce-type": "com.example.blob"})
        assert response.status == 202, await response.text()
        assert [e["id"] for e in h.stored("orders.created")] == ["bin-1"]
        assert h.stored("audit.orders") == []
        [refused] = [s for s in h.journey("bin-1") if s["step"] == "copy_refused"]
        assert refused["path"] == "data"


def test_only_targets_with_a_schema_of_their_own_are_checked():
    same = make_config(topics=[topic("audit.orders", schema=copy.deepcopy(ORDER_SCHEMA)),
                               topic("orders.created", schema=copy.deepcopy(ORDER_SCHEMA)), "orders.shipped"])
    state = MeshState.build(same)
    [route] = state.topics["orders.created"].routes
    assert route.checks == ()  # an event that passed the source's schema passes the same one
    [route] = state.topics["orders.shipped"].routes
    assert [target for target, _schema in route.checks] == ["audit.orders"]  # no schema at the source
    state = MeshState.build(doc())
    [route] = state.topics["orders.created"].routes
    assert [target for target, _schema in route.checks] == ["audit.orders"]
