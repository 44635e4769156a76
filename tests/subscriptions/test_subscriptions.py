"""Subscriptions: pages and API through the generic mixins, requesting one, its delivery settings,
its signing secret, the inbox and its count, the topic page's subscribers, and e-mail."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core import mail
from django.test import RequestFactory
from django.urls import reverse

from meshadmin.context_processors import inbox
from meshadmin.models import AuditEntry
from subscriptions.models import Subscription
from tests.portal_support.factories import make_app, make_subscription, make_topic
from tests.portal_support.mixins import (
    ConstantListQueries,
    ModelAPITests,
    ModelPageTests,
    page_after_constant_queries,
)
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

DELIVERY = {"webhook_url": "https://billing.example.com/hooks/orders", "delivery_mode": "binary", "timeout_ms": 5000,
            "max_attempts": 8, "backoff_base_ms": 200, "backoff_cap_ms": 60000, "max_in_flight": 16}


class SubscriptionData:
    url_name = "subscriptions:subscription"
    api_basename = "subscription"
    visible_to_outsider = False  # only the application's and the topic's teams see it

    def make_object(self, team, store):
        return make_subscription(make_app(team), make_topic(team, store))

    def create_data(self, team, store):
        return {"topic": make_topic(team, store).pk, "application": make_app(team).pk, **DELIVERY, "filters": "[]"}

    def api_create_data(self, team, store):
        return {**self.create_data(team, store), "filters": []}

    def update_data(self, obj):
        return {**DELIVERY, "webhook_url": "https://billing.example.com/v2/hooks", "max_in_flight": 1,
                "filters": '[{"exact": {"type": "com.example.order.created"}}]'}

    def api_update_data(self, obj):
        return {"webhook_url": "https://billing.example.com/v2/hooks", "max_in_flight": 1}


class TestSubscriptionPages(SubscriptionData, ConstantListQueries, ModelPageTests):
    def post(self, user, data):
        return client_for(user).post(reverse("subscriptions:subscription_add"), data)

    def test_a_request_is_requested_whatever_the_form_says(self, payments, store, personas):
        response = self.post(personas["bob"], {**self.create_data(payments, store), "state": "active"})
        assert response.status_code == 302
        sub = Subscription.objects.get()
        assert sub.state == Subscription.REQUESTED and sub.requested_by == personas["bob"]

    def test_only_the_users_teams_applications_may_request(self, payments, logistics, store, personas):
        data = {**self.create_data(payments, store), "application": make_app(logistics).pk}
        response = self.post(personas["bob"], data)
        assert response.status_code == 400 and 'data-testid="error-application"' in response.content.decode()

    def test_an_application_has_one_open_subscription_per_topic(self, payments, store, personas):
        data = self.create_data(payments, store)
        assert self.post(personas["bob"], data).status_code == 302
        response = self.post(personas["bob"], data)
        assert response.status_code == 400
        assert "already has an open subscription" in response.content.decode()
        Subscription.objects.update(state=Subscription.REVOKED)
        assert self.post(personas["bob"], data).status_code == 302

    @pytest.mark.parametrize(("url", "message"), [
        ("ftp://billing.example.com/hooks", "starts with http:// or https://"),
        ("https://user:secret@billing.example.com/hooks", "Put no credentials in a webhook URL"),
        ("https:///hooks", "names a host"),
        ("https://billing .example.com/", "contains no spaces"),
        ("https://bad_host/", "is not a valid host name"),
    ])
    def test_a_webhook_url_is_http_or_https_with_a_host_and_no_credentials(self, payments, store, personas,
                                                                         url, message):
        response = self.post(personas["bob"], {**self.create_data(payments, store), "webhook_url": url})
        assert response.status_code == 400
        assert message in response.content.decode()

    @pytest.mark.parametrize("url", ["http://billing:8080/hooks", "https://10.0.0.7/hooks", "http://[::1]:9000/h"])
    def test_internal_webhook_hosts_are_accepted(self, payments, store, personas, url):
        assert self.post(personas["bob"], {**self.create_data(payments, store), "webhook_url": url}).status_code == 302

    @pytest.mark.parametrize(("change", "message"), [
        ({"filters": '[{"sql": "type = 1"}]'}, "filters[0]: the sql dialect is not supported"),
        ({"filters": '[{"not": {"suffix": {"Type": "x"}}}]'}, "filters[0].not.suffix: attribute name"),
        ({"backoff_cap_ms": 100, "backoff_base_ms": 200}, "The backoff cap must be at least the backoff base"),
        ({"max_in_flight": 0}, "greater than or equal to 1"),
        ({"timeout_ms": 50}, "greater than or equal to 100"),
        ({"delivery_mode": "batch"}, "Select a valid choice"),
    ])
    def test_delivery_settings_are_checked(self, payments, store, personas, change, message):
        response = self.post(personas["bob"], {**self.create_data(payments, store), **change})
        assert response.status_code == 400
        assert message in response.content.decode()

    def test_the_topic_and_application_cannot_be_changed_later(self, obj, payments, store, personas):
        other = make_topic(payments, store)
        data = {**self.update_data(obj), "topic": other.pk}
        assert client_for(personas["bob"]).post(reverse("subscriptions:subscription_edit", args=[obj.pk]),
                                                data).status_code == 302
        obj.refresh_from_db()
        assert obj.topic_id != other.pk and obj.max_in_flight == 1

    def test_the_topic_team_sees_but_may_not_change_the_delivery_settings(self, payments, logistics, store,
                                                                           personas):
        sub = make_subscription(make_app(logistics), make_topic(payments, store))
        alice = client_for(personas["alice"])
        assert alice.get(sub.get_absolute_url()).status_code == 200
        assert alice.post(reverse("subscriptions:subscription_edit", args=[sub.pk]),
                          self.update_data(sub)).status_code == 404
        assert alice.post(reverse("subscriptions:subscription_delete", args=[sub.pk])).status_code == 404

    def test_the_signing_secret_is_shown_to_the_application_side_only(self, payments, logistics, store, personas):
        sub = make_subscription(make_app(logistics), make_topic(payments, store))
        assert sub.signing_secret.startswith("whsec_")
        assert sub.signing_secret in client_for(personas["carol"]).get(sub.get_absolute_url()).content.decode()
        for topic_side in ("alice", "bob"):
            html = client_for(personas[topic_side]).get(sub.get_absolute_url()).content.decode()
            assert sub.signing_secret not in html, topic_side

    def test_the_signing_secret_never_enters_the_audit_log(self, payments, store, personas):
        self.post(personas["bob"], self.create_data(payments, store))
        sub = Subscription.objects.get()
        for entry in AuditEntry.objects.filter(object_id=str(sub.pk)):
            assert sub.signing_secret not in json.dumps([entry.before, entry.after])

    def test_both_sides_see_the_whole_history(self, payments, logistics, store, personas):
        """The audit log files a subscription under the application's team; the topic's team
        still sees its history on the subscription's page."""
        topic = make_topic(payments, store)
        client_for(personas["carol"]).post(reverse("subscriptions:subscription_add"), {
            "topic": topic.pk, "application": make_app(logistics).pk, **DELIVERY, "filters": "[]"})
        sub = Subscription.objects.get()
        sub.approve(by=personas["alice"], comment="welcome")
        for name in ("carol", "alice"):
            html = client_for(personas[name]).get(reverse("subscriptions:subscription_history", args=[sub.pk]))
            assert html.content.decode().count('data-testid="audit-entry"') == 2, name
        assert client_for(personas["dave"]).get(  # a viewer of the topic's team sees it too
            reverse("subscriptions:subscription_history", args=[sub.pk])).status_code == 200

    def test_list_filters_by_state_and_by_awaiting_my_review(self, payments, logistics, store, personas):
        waiting = make_subscription(make_app(logistics), make_topic(payments, store))
        mine = make_subscription(make_app(payments), make_topic(logistics, store))
        active = make_subscription(make_app(payments), make_topic(payments, store), Subscription.ACTIVE)
        client = client_for(personas["bob"])
        html = client.get(reverse("subscriptions:subscription_list"), {"awaiting_review": "true"}).content.decode()
        assert waiting.subscription_id in html and mine.subscription_id not in html
        html = client.get(reverse("subscriptions:subscription_list"), {"state": "active"}).content.decode()
        assert active.subscription_id in html and waiting.subscription_id not in html


class TestSubscriptionAPI(SubscriptionData, ModelAPITests):
    def test_api_request_ignores_state_and_records_the_requester(self, payments, store, personas):
        data = {**self.api_create_data(payments, store), "state": "active", "reviewer_comment": "self-approved"}
        body = client_for(personas["bob"]).post(reverse("api:subscription-list"), data,
                                                content_type="application/json").json()
        sub = Subscription.objects.get(pk=body["id"])
        assert body["state"] == sub.state == "requested" and sub.reviewer_comment == ""
        assert sub.requested_by == personas["bob"] and "signing_secret" not in body

    def test_api_refuses_another_teams_application(self, payments, logistics, store, personas):
        data = {**self.api_create_data(payments, store), "application": make_app(logistics).pk}
        response = client_for(personas["bob"]).post(reverse("api:subscription-list"), data,
                                                    content_type="application/json")
        assert response.status_code == 403  # he sees the application: he is told whose it is
        assert response.json()["detail"].startswith("You are not a member of team Logistics")

    def test_api_checks_filters_and_urls_like_the_form(self, payments, store, personas):
        client = client_for(personas["bob"])
        for change, field, message in (
            ({"filters": [{"any": []}]}, "filters", "filters[0].any: must contain at least one filter."),
            ({"webhook_url": "ftp://x.y/"}, "webhook_url", "A webhook URL starts with http:// or https://."),
        ):
            data = {**self.api_create_data(payments, store), **change}
            response = client.post(reverse("api:subscription-list"), data, content_type="application/json")
            assert response.status_code == 400 and response.json()[field] == [message]

    def test_api_topic_and_application_are_set_once(self, obj, payments, store, personas):
        other = make_topic(payments, store)
        client_for(personas["bob"]).patch(reverse("api:subscription-detail", args=[obj.pk]), {"topic": other.pk},
                                          content_type="application/json")
        obj.refresh_from_db()
        assert obj.topic_id != other.pk

    def test_api_signing_secret_for_the_application_side_only(self, payments, logistics, store, personas):
        sub = make_subscription(make_app(logistics), make_topic(payments, store))
        url = reverse("api:subscription-signing-secret", args=[sub.pk])
        assert client_for(personas["carol"]).get(url).json() == {"signing_secret": sub.signing_secret}
        response = client_for(personas["alice"]).get(url)
        assert response.status_code == 403 and sub.signing_secret not in response.content.decode()
        assert client_for(personas["sam"]).get(url).status_code == 200

    def test_api_lists_what_awaits_my_review(self, payments, logistics, store, personas):
        waiting = make_subscription(make_app(logistics), make_topic(payments, store))
        make_subscription(make_app(payments), make_topic(logistics, store))
        body = client_for(personas["alice"]).get(reverse("api:subscription-list"), {"awaiting_review": "true"}).json()
        assert [s["id"] for s in body["results"]] == [waiting.pk]


class TestRequestFromTheTopicPage:
    def test_the_topic_page_offers_the_subscribe_form_to_editors_only(self, payments, store, personas):
        topic = make_topic(payments, store, "orders.created")
        make_app(payments, "billing")
        html = client_for(personas["bob"]).get(topic.get_absolute_url()).content.decode()
        form = html.split('data-testid="subscribe"')[1].split("</form>")[0]
        assert f'action="{reverse("subscriptions:subscription_add")}"' in form
        assert f'name="topic" value="{topic.pk}"' in form and ">billing<" in form
        assert 'name="webhook_url"' in form and 'type="hidden" name="max_in_flight" value="16"' in form
        viewer = client_for(personas["dave"]).get(topic.get_absolute_url()).content.decode()
        assert 'data-testid="subscribe"' not in viewer

    def test_posting_the_topic_page_form_requests_a_subscription(self, payments, store, personas):
        topic = make_topic(payments, store, "orders.created")
        app = make_app(payments, "billing")
        data = {"topic": topic.pk, "application": app.pk, **DELIVERY, "filters": "[]"}
        response = client_for(personas["bob"]).post(reverse("subscriptions:subscription_add"), data, follow=True)
        assert "Requested billing ← orders.created: Payments reviews it." in response.content.decode()

    def test_the_topic_page_lists_the_subscribers_the_user_may_see(self, payments, logistics, store, personas):
        topic = make_topic(payments, store, "orders.created")
        make_subscription(make_app(payments, "billing"), topic, Subscription.ACTIVE)
        make_subscription(make_app(logistics, "tracker"), topic, Subscription.PAUSED)
        html = client_for(personas["dave"]).get(topic.get_absolute_url()).content.decode()
        table = html.split('data-testid="topic-subscribers"')[1].split("</table>")[0]
        assert "billing" in table and ">active<" in table and "tracker" in table and ">paused<" in table
        outsider = client_for(personas["carol"]).get(topic.get_absolute_url()).content.decode()
        table = outsider.split('data-testid="topic-subscribers"')[1].split("</table>")[0]
        assert "tracker" in table and "billing" not in table  # carol's own team's only


class TestRequestMail:
    def test_a_request_mails_the_topic_teams_editors_but_not_its_viewers(self, payments, logistics, store,
                                                                        personas, eager_celery,
                                                                        django_capture_on_commit_callbacks):
        data = {"topic": make_topic(payments, store, "orders.created").pk,
                "application": make_app(logistics, "tracker").pk, **DELIVERY, "filters": "[]"}
        with django_capture_on_commit_callbacks(execute=True):
            client_for(personas["carol"]).post(reverse("subscriptions:subscription_add"), data)
        [message] = mail.outbox
        assert sorted(message.to) == ["alice@example.com", "bob@example.com"]
        assert message.subject == "[Meshadmin] tracker asks to subscribe to orders.created"
        sub = Subscription.objects.get()
        assert f"http://testserver/subscriptions/{sub.pk}/" in message.body and "carol" in message.body

    def test_an_api_request_mails_too_but_not_the_requester(self, payments, store, personas, eager_celery,
                                                          django_capture_on_commit_callbacks):
        data = {"topic": make_topic(payments, store).pk, "application": make_app(payments).pk, **DELIVERY}
        with django_capture_on_commit_callbacks(execute=True):
            client_for(personas["bob"]).post(reverse("api:subscription-list"), data, content_type="application/json")
        [message] = mail.outbox
        assert message.to == ["alice@example.com"]

    def test_a_refused_request_mails_nobody(self, payments, store, personas, eager_celery,
                                           django_capture_on_commit_callbacks):
        data = {"topic": make_topic(payments, store).pk, "application": make_app(payments).pk, **DELIVERY,
                "webhook_url": "ftp://nope/"}
        with django_capture_on_commit_callbacks(execute=True):
            client_for(personas["bob"]).post(reverse("subscriptions:subscription_add"), data)
        assert mail.outbox == []


class TestInbox:
    def test_the_inbox_lists_requests_to_the_users_teams_topics(self, payments, logistics, store, personas):
        waiting = make_subscription(make_app(logistics, "tracker"), make_topic(payments, store, "orders.created"))
        make_subscription(make_app(payments), make_topic(payments, store), Subscription.ACTIVE)
        outgoing = make_subscription(make_app(payments), make_topic(logistics, store, "parcels.sent"))
        html = client_for(personas["alice"]).get(reverse("subscriptions:inbox")).content.decode()
        assert html.count('data-testid="inbox-row"') == 1 and waiting.subscription_id in html
        assert outgoing.subscription_id not in html
        assert 'data-testid="inbox-approve"' in html and 'data-testid="inbox-reject"' in html
        carol = client_for(personas["carol"]).get(reverse("subscriptions:inbox")).content.decode()
        assert carol.count('data-testid="inbox-row"') == 1 and outgoing.subscription_id in carol

    def test_the_inbox_runs_a_constant_number_of_queries(self, payments, logistics, store, personas,
                                                         django_assert_num_queries):
        def add(count):
            for _ in range(count):
                make_subscription(make_app(logistics), make_topic(payments, store), requested_by=personas["carol"])

        html = page_after_constant_queries(client_for(personas["alice"]), reverse("subscriptions:inbox"), add,
                                           django_assert_num_queries)
        assert html.count('data-testid="inbox-row"') == 30 and html.count("by carol") == 30

    def test_viewers_have_nothing_to_review(self, payments, logistics, store, personas):
        make_subscription(make_app(logistics), make_topic(payments, store))
        html = client_for(personas["dave"]).get(reverse("subscriptions:inbox")).content.decode()
        assert 'data-testid="inbox-row"' not in html and "Nothing awaits your review" in html

    def test_the_navigation_shows_how_many_requests_await(self, payments, logistics, store, personas):
        for _ in range(2):
            make_subscription(make_app(logistics), make_topic(payments, store))
        make_subscription(make_app(payments), make_topic(logistics, store))
        html = client_for(personas["bob"]).get(reverse("meshadmin:home")).content.decode()
        badge = html.split('data-testid="inbox-count">')[1].split("<")[0]
        assert badge == "2"
        html = client_for(personas["sam"]).get(reverse("meshadmin:home")).content.decode()
        assert html.split('data-testid="inbox-count">')[1].split("<")[0] == "3"  # staff review everything

    def test_the_count_costs_one_query_and_none_for_anonymous_visitors(self, payments, logistics, store, personas,
                                                                       django_assert_num_queries):
        for _ in range(3):
            make_subscription(make_app(logistics), make_topic(payments, store))
        request = RequestFactory().get("/")
        request.user = personas["alice"]
        count = inbox(request)["inbox_count"]
        with django_assert_num_queries(1):
            assert str(count) == "3" and count  # as the navigation template renders and tests it
        request.user = AnonymousUser()
        with django_assert_num_queries(0):
            assert inbox(request)["inbox_count"] == 0
