"""Apache EventMesh's topic names (``TEST-TOPIC-HTTP-ASYNC``, ``EventMesh.SyncRequestInstance``)
in the runtime: one rule with the portal (``meshruntime.policy.validate_topic_name``), and
patterns, access rules and routing keep working with such names."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
import pytest
from factories import access_rule, key_for, make_config, routing_rule, topic
from runtime_harness import running_runtime

from meshruntime.config import ConfigError, seal, validate_document
from meshruntime.policy import PolicyError, pattern_matches, validate_pattern, validate_topic_name

# Topic names used by Apache EventMesh's examples and SDK demos
EVENTMESH_NAMES = ["TEST-TOPIC-HTTP-ASYNC", "TEST-TOPIC-HTTP-SYNC", "TEST-TOPIC-TCP-BROADCAST",
                   "EventMesh.SyncRequestInstance", "TEST_TOPIC_GRPC_ASYNC", "TopicTest"]


@pytest.mark.parametrize("name", EVENTMESH_NAMES)
def test_eventmesh_topic_names_are_valid_names(name):
    validate_topic_name(name)
    validate_pattern(name)


@pytest.mark.parametrize("bad", ["TEST TOPIC", "a..b", ".a", "a.", "Ä-topic", "a/b", "a*", "EventMesh.*.x"])
def test_names_still_refuse_what_no_store_or_url_takes(bad):
    with pytest.raises(PolicyError, match="dot-separated segments of letters, digits"):
        validate_topic_name(bad)


def test_patterns_match_mixed_case_names_exactly_and_by_prefix():
    assert pattern_matches("EventMesh.*", "EventMesh.SyncRequestInstance")
    assert pattern_matches("TEST-TOPIC-HTTP-ASYNC", "TEST-TOPIC-HTTP-ASYNC")
    # case matters: a topic name is an exact string (store keys, stream names, URLs)
    assert not pattern_matches("eventmesh.*", "EventMesh.SyncRequestInstance")
    assert not pattern_matches("test-topic-http-async", "TEST-TOPIC-HTTP-ASYNC")


def test_a_document_with_eventmesh_names_is_valid():
    doc = make_config(topics=["TEST-TOPIC-HTTP-ASYNC", "EventMesh.SyncRequestInstance", "audit.orders",
                              "orders.created", "orders.shipped"],
                      access_rules=[access_rule("rule-1", ["billing"], "EventMesh.*", ["publish"])],
                      routing_rules=[routing_rule("route-1", "EventMesh.*", ["TEST-TOPIC-HTTP-ASYNC"])])
    assert validate_document(doc) is doc


def test_a_document_with_two_topics_differing_only_in_case_is_refused():
    doc = make_config(topics=["TEST-TOPIC-HTTP-ASYNC", "test-topic-http-async"], subscriptions=[],
                      routing_rules=[], access_rules=[])
    with pytest.raises(ConfigError, match=r"topics\[1\].name: 'test-topic-http-async' differs only in case "
                                          r"from topics\[0\] 'TEST-TOPIC-HTTP-ASYNC'"):
        validate_document(seal(doc, doc["version"]))


def _eventmesh_doc():
    return make_config(
        topics=[topic("TEST-TOPIC-HTTP-ASYNC"), topic("EventMesh.SyncRequestInstance"), topic("AUDIT-EVENTMESH"),
                "audit.orders", "orders.created", "orders.shipped"],
        access_rules=[access_rule("rule-1", ["billing"], "TEST-TOPIC-HTTP-ASYNC", ["publish"]),
                      access_rule("rule-2", ["billing"], "EventMesh.*", ["publish"]),
                      access_rule("rule-3", "*", "AUDIT-EVENTMESH", ["publish"], effect="deny")],
        routing_rules=[routing_rule("route-1", "EventMesh.*", ["AUDIT-EVENTMESH"])],
        subscriptions=[],
    )


def _code_104(topic_name: str, app: str = "billing") -> dict:
    content = {"specversion": "1.0", "id": f"id-{topic_name}", "source": "/", "type": "cloudevents",
               "subject": topic_name, "datacontenttype": "application/cloudevents+json",
               "data": {"content": "testAsyncMessage"}}
    return {"headers": {"code": "104", "protocoltype": "cloudevents", "protocolversion": "1.0",
                        "idc": "idc", "pid": "4242", "sys": "1234", "passwd": key_for(app),
                        "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
            "data": urlencode({"producergroup": "EventMeshTest-producerGroup",
                               "content": orjson.dumps(content).decode()})}


async def test_the_runtime_publishes_to_eventmesh_topic_names_with_rules_and_routes(redis_url, key_prefix,
                                                                                   redis_client):
    async with running_runtime(redis_url, key_prefix, doc=_eventmesh_doc()) as h:
        async def post(topic_name: str) -> dict:
            response = await h.client.post("/eventmesh/publish", **_code_104(topic_name))
            return await response.json()

        assert await post("TEST-TOPIC-HTTP-ASYNC") == {"retCode": 0, "retMsg": "success"}
        assert [e["id"] for e in h.stored("TEST-TOPIC-HTTP-ASYNC")] == ["id-TEST-TOPIC-HTTP-ASYNC"]
        # a prefix rule allows it, a routing rule with a prefix source copies it
        assert (await post("EventMesh.SyncRequestInstance"))["retCode"] == 0
        assert [e["meshroute"] for e in h.stored("AUDIT-EVENTMESH")] == ["route-1"]
        # the deny rule on an upper-case name decides, and names itself
        refused = await post("AUDIT-EVENTMESH")
        assert refused["retCode"] == 22 and "rule-3" in refused["retMsg"]
        # a name that differs in case is another (unknown) topic
        refused = await post("test-topic-http-async")
        assert refused["retCode"] == 22 and "unknown topic 'test-topic-http-async'" in refused["retMsg"]
        # the path form takes the topic from the URL, as EventMesh does
        response = await h.client.post("/eventmesh/publish/TEST-TOPIC-HTTP-ASYNC", data=b'{"a": 1}',
                                       headers={"passwd": key_for("billing")})
        assert (await response.json())["retCode"] == 0
        assert len(h.stored("TEST-TOPIC-HTTP-ASYNC")) == 2
