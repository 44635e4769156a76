"""tracing.promql: label values are quoted so that they mean themselves, checked against a real
Prometheus (a string comparison would only prove that the code does what its author thought)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from prometheus_client import CollectorRegistry, Counter

from governance.models import Application
from subscriptions.models import Subscription
from tests.portal_support.prometheus import serving_metrics
from tests.portal_support.waiting import wait_for
from topics.models import Topic
from tracing import charts, prometheus
from tracing.promql import Regex, regex_any, selector, string

# What users could name things if a validator ever let them: quotes that close the selector,
# a backslash, a newline, regular-expression characters, and text that is not ASCII.
HOSTILE = ['a"}or{x="', 'a"} or vector(1) or {x="', "back\\slash", "two\nlines", "tab\there", "a|b", ".*",
           "(x)", "ünï€😀", "carriage\rreturn", "bell\x07"]
NEIGHBOURS = ["a", "b", "x", ""]


def test_string_quotes_what_would_end_the_string_and_nothing_else() -> None:
    assert string('a"}or{x="') == '"a\\"}or{x=\\""'
    assert string("back\\slash\n") == '"back\\\\slash\\n"'
    assert string("ünï€") == '"ünï€"'
    assert string("\x07") == '"\\x07"'
    with pytest.raises(ValueError, match="valid UTF-8"):
        string("\ud800")


def test_names_that_are_not_prometheus_names_are_refused() -> None:
    with pytest.raises(ValueError, match="metric name"):
        selector('up{x="1"}')
    with pytest.raises(ValueError, match="label name"):
        selector("up", {'topic="x",y': "1"})
    with pytest.raises(ValueError, match="label name"):
        selector("up", {"__name__": "anything"})


def test_an_empty_set_of_values_matches_nothing() -> None:
    assert regex_any([]) == Regex("$^")


@pytest.fixture(scope="module")
def exporter():
    """An exporter whose series carry the hostile values (escaped by prometheus_client, as any
    runtime's would be), plus neighbours a broken selector would also match."""
    registry = CollectorRegistry()
    counter = Counter("meshruntime_events_published", "test", ["topic", "application", "subscription"],
                      registry=registry)
    for n, value in enumerate(HOSTILE + NEIGHBOURS):
        counter.labels(value, value, value).inc(n + 1)

    with serving_metrics(registry) as target:
        yield target


@pytest.fixture(scope="module")
def hostile_server(exporter, start_module_prometheus):
    server = start_module_prometheus(f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s}}
scrape_configs:
  - job_name: hostile
    static_configs: [{{targets: ["{exporter}"]}}]
""")
    expected = len(HOSTILE) + len(NEIGHBOURS)
    wait_for(lambda: len(server.query("meshruntime_events_published_total")) == expected, 30,
             "Prometheus to scrape the hostile series", interval=0.2)
    # two scrapes at least, so that rates have two samples
    wait_for(lambda: server.query("count_over_time(meshruntime_events_published_total[1m]) >= 2"), 30,
             "a second scrape", interval=0.2)
    return server


@pytest.fixture
def hostile_prometheus(hostile_server, settings):
    server = hostile_server
    settings.PROMETHEUS_URL = server.url
    settings.PROMETHEUS_SCRAPE_INTERVAL = 1
    return server


def _values(series, label: str) -> list[str]:
    return sorted(s.labels.get(label, "") for s in series)


@pytest.mark.parametrize("label", ["topic", "application", "subscription"])
def test_each_hostile_value_selects_exactly_its_own_series(hostile_prometheus, label):
    for value in HOSTILE:
        found = async_to_sync(prometheus.query_instant)(selector("meshruntime_events_published_total", {label: value}))
        assert _values(found, label) == [value], value
        found = async_to_sync(prometheus.query_instant)(
            selector("meshruntime_events_published_total", {label: regex_any([value, "b"])}))
        assert _values(found, label) == sorted([value, "b"]), value


@pytest.mark.django_db
def test_the_charts_of_objects_with_hostile_names_ask_only_for_their_own_series(hostile_prometheus):
    """Names reach the charts from the database; here they are hostile (no validator runs on an
    unsaved object), and each chart's answer still holds only the object's own series."""
    for value in HOSTILE:
        topic, application = Topic(name=value), Application(name=value)
        for chart in charts.TOPIC_CHARTS[:1] + charts.APPLICATION_CHARTS[:1]:
            obj = topic if chart.model is Topic else application
            query = chart.query(obj, "15m")
            found = async_to_sync(prometheus.query_instant)(query.promql)
            label = "application" if chart.model is Topic else "topic"
            assert _values(found, label) == [value], (chart.name, value, query.promql)
    subscription = Subscription(pk=1)
    query = charts.CHARTS["subscription.dead_letters"].query(subscription, "15m")
    assert 'subscription="sub-1"' in query.promql
