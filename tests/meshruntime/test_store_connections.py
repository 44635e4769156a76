"""A runtime's store connections (``--store NAME=URL``, ``MESH_STORES``, ``--stores-file``), how
a document's stores map onto them, and the document's rules for MQTT delivery targets."""

from __future__ import annotations

import pytest
from factories import make_config, subscription, topic

from meshruntime.__main__ import build_parser, settings_from_args
from meshruntime.config import ConfigError, validate_document
from meshruntime.store.storeset import StoreSet, parse_connections, read_connections_file


def test_connections_are_name_equals_url_and_bad_ones_are_named():
    assert parse_connections(["orders=kafka://b:9092,c:9092", "default=redis://r:6379/0"]) == {
        "orders": "kafka://b:9092,c:9092", "default": "redis://r:6379/0"}
    with pytest.raises(ValueError, match="--store: 'kafka://b:9092' is not NAME=URL"):
        parse_connections(["kafka://b:9092"])
    with pytest.raises(ValueError, match="'orders' is given twice"):
        parse_connections(["orders=kafka://a:1", "orders=kafka://b:1"])
    with pytest.raises(ValueError, match="'bad name' is not a store connection name"):
        parse_connections(["bad name=redis://r"])
    with pytest.raises(ValueError, match=r"'x=redis://u:\*\*\*@r:1' is not NAME=URL|is not a store connection"):
        parse_connections(["x=redis://u:secret@r:1", "=nats://n"])


def test_the_command_line_gathers_connections_from_the_file_the_environment_and_flags(tmp_path, monkeypatch):
    path = tmp_path / "stores"
    path.write_text("# the mesh's stores\norders=kafka://broker:9092\n\niot = nats://nats:4222  # devices\n")
    assert read_connections_file(path) == {"orders": "kafka://broker:9092", "iot": "nats://nats:4222"}
    monkeypatch.setenv("MESH_STORES", "audit=redis://audit:6379/0")
    args = build_parser().parse_args(["--gateway", "--config-file", "m.json", "--stores-file", str(path),
                                      "--store", "default=redis://r:6379/0", "--mqtt-ingest", "devices=sensors"])
    settings = settings_from_args(args)
    assert settings.connections == {"orders": "kafka://broker:9092", "iot": "nats://nats:4222",
                                    "audit": "redis://audit:6379/0", "default": "redis://r:6379/0"}
    assert settings.mqtt_ingest == [("devices", "sensors")]
    clash = build_parser().parse_args(["--gateway", "--config-file", "m.json", "--stores-file", str(path),
                                       "--store", "orders=kafka://other:9092"])
    with pytest.raises(SystemExit, match="--store: the connection 'orders' is given twice, with two URLs"):
        settings_from_args(clash)


def test_a_store_of_another_kind_than_its_connection_is_missing_with_the_reason():
    stores = StoreSet({"default": "redis://127.0.0.1:1/0", "orders": "nats://127.0.0.1:1"})
    stores.apply([{"name": "main", "kind": "redis"}, {"name": "orders", "kind": "kafka", "connection": "orders"},
                  {"name": "audit", "kind": "redis", "connection": "audit"}],
                 [("a", "main"), ("b", "orders"), ("c", "audit")])
    assert stores.missing == {
        "orders": "event store 'orders' is kafka in the catalog, but this runtime's connection 'orders' is a nats URL",
        "audit": "event store 'audit' (redis): this runtime has no connection 'audit' (start it with --store "
                 "audit=URL)"}
    assert set(stores.refused) == {"b", "c"} and stores.store_for("a").kind == "redis"


def _with_target(url: str, mode: str = "structured", **extra) -> dict:
    return make_config(
        bare=True, stores=["default", {"name": "devices", "kind": "mqtt"}], topics=[topic("alerts.raised")],
        applications=["dashboard"],
        subscriptions=[subscription("sub-1", "alerts.raised", "dashboard", delivery={"url": url, "mode": mode},
                                    **extra)])


def test_a_subscription_may_deliver_to_a_topic_of_an_mqtt_store_in_structured_mode():
    validate_document(_with_target("mqtt://devices/plant/alerts"))
    with pytest.raises(ConfigError, match=r"delivery.mode: an MQTT target takes structured mode"):
        validate_document(_with_target("mqtt://devices/plant/alerts", "binary"))
    with pytest.raises(ConfigError, match=r"delivery.url: 'default' is not an MQTT store of the document \(it is"):
        validate_document(_with_target("mqtt://default/plant/alerts"))
    with pytest.raises(ConfigError, match=r"responder: an MQTT target cannot answer requests"):
        validate_document(_with_target("mqtt://devices/plant/alerts", responder=True))
    with pytest.raises(ConfigError, match=r"delivery.url"):
        validate_document(_with_target("mqtt://devices/plant/#"))
