"""Teams, memberships, API tokens, the audit log and health."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from meshadmin.audit import audit_context
from meshadmin.models import APIToken, AuditEntry, Membership, Team
from tests.portal_support.mixins import ModelAPITests, ModelPageTests
from tests.portal_support.personas import client_for
from topics.models import Topic

pytestmark = pytest.mark.django_db
_counter = iter(range(1_000_000))


class TeamData:
    url_name = "meshadmin:team"
    api_basename = "team"
    editor = "alice"  # only owners change a team
    viewer = "bob"
    created_for_a_team = False  # a new team belongs to its creator, so there is no "other team"

    def make_object(self, team, store):
        return team

    def create_data(self, team, store):
        n = next(_counter)
        return {"name": f"Fulfilment {n}", "slug": f"fulfilment-{n}", "description": "Ships parcels."}

    def update_data(self, obj):
        return {"name": obj.name, "slug": obj.slug, "description": "Changed."}


class TestTeamPages(TeamData, ModelPageTests):
    def test_creator_becomes_the_owner_of_a_new_team(self, personas):
        client_for(personas["carol"]).post(reverse("meshadmin:team_add"), self.create_data(None, None))
        team = Team.objects.latest("pk")
        assert Membership.objects.get(team=team).user == personas["carol"]
        assert Membership.objects.get(team=team).role == Membership.OWNER

    def test_bulk_delete_removes_only_what_the_user_may_delete(self, obj, personas, logistics, store):
        client = client_for(personas["alice"])
        client.post(reverse("meshadmin:team_bulk_delete"), {"pk": [obj.pk, logistics.pk], "confirm": "1"})
        assert not Team.objects.filter(pk=obj.pk).exists()
        assert Team.objects.filter(pk=logistics.pk).exists()

    def test_team_page_lists_members_and_owned_topics(self, payments, store, personas):
        Topic.objects.create(name="orders.created", team=payments, store=store)
        html = client_for(personas["carol"]).get(payments.get_absolute_url()).content.decode()
        assert "orders.created" in html and "alice" in html and "dave" in html


class TestTeamAPI(TeamData, ModelAPITests):
    pass


class TestMemberships:
    def test_only_team_owners_add_members(self, payments, personas):
        newcomer = User.objects.create_user("erin")
        data = {"team": payments.pk, "user": newcomer.pk, "role": "member"}
        assert client_for(personas["bob"]).post(reverse("meshadmin:membership_add"), data).status_code == 403
        assert not Membership.objects.filter(user=newcomer).exists()
        assert client_for(personas["alice"]).post(reverse("meshadmin:membership_add"), data).status_code == 302
        assert Membership.objects.get(user=newcomer).team == payments

    def test_outsiders_do_not_see_a_teams_memberships(self, payments, personas):
        membership = Membership.objects.get(user=personas["bob"])
        assert client_for(personas["carol"]).get(membership.get_absolute_url()).status_code == 404
        body = client_for(personas["carol"]).get(reverse("api:membership-list")).json()
        assert {m["username"] for m in body["results"]} == {"carol"}

    def test_a_member_cannot_promote_themselves_through_the_api(self, payments, personas):
        membership = Membership.objects.get(user=personas["bob"])
        response = client_for(personas["bob"]).patch(reverse("api:membership-detail", args=[membership.pk]),
                                                     {"role": "owner"}, content_type="application/json")
        assert response.status_code == 403  # he sees it: he is told why he may not change it
        assert response.json()["detail"] == ("You are a member of team Payments: only its owners change its "
                                             "memberships.")
        membership.refresh_from_db()
        assert membership.role == Membership.MEMBER


class TestAPITokens:
    def test_a_token_is_shown_once_and_stored_hashed(self, personas):
        response = client_for(personas["bob"]).post(reverse("meshadmin:apitoken_list"), {"description": "ci"})
        key = response.context["key"]
        token = APIToken.objects.get(user=personas["bob"])
        assert key.startswith(f"mat_{token.prefix}_") and key not in str(token.__dict__)
        page = client_for(personas["bob"]).get(reverse("meshadmin:apitoken_list")).content.decode()
        assert key not in page and token.prefix in page

    def _token(self, user, **fields):
        token = APIToken(user=user, **fields)
        key = token.generate()
        token.save()
        return key

    def test_token_authenticates_api_requests(self, personas, client):
        key = self._token(personas["bob"])
        response = client.get(reverse("api:topic-list"), HTTP_AUTHORIZATION=f"Token {key}")
        assert response.status_code == 200
        assert APIToken.objects.get().last_used is not None

    @pytest.mark.parametrize("bad", ["mat_nope_nope", "garbage", "mat_"])
    def test_an_unknown_token_is_401(self, personas, client, bad):
        self._token(personas["bob"])
        response = client.get(reverse("api:topic-list"), HTTP_AUTHORIZATION=f"Token {bad}")
        assert response.status_code == 401

    def test_an_expired_token_is_401_with_a_reason(self, personas, client):
        key = self._token(personas["bob"], expires=timezone.now() - timedelta(minutes=1))
        response = client.get(reverse("api:topic-list"), HTTP_AUTHORIZATION=f"Bearer {key}")
        assert response.status_code == 401 and "expired" in response.json()["detail"]

    def test_a_read_only_token_cannot_write(self, personas, client, payments, store):
        key = self._token(personas["bob"], read_only=True)
        response = client.post(reverse("api:topic-list"), {"name": "a.b", "team": payments.pk, "store": store.pk},
                               content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}")
        assert response.status_code == 403 and "read-only" in response.json()["detail"]
        assert not Topic.objects.exists()

    def test_tokens_are_personal(self, personas):
        self._token(personas["alice"], description="alice's")
        token = APIToken.objects.get()
        assert client_for(personas["sam"]).get(reverse("api:apitoken-list")).json()["count"] == 0
        assert client_for(personas["bob"]).post(reverse("meshadmin:apitoken_delete", args=[token.pk])).status_code \
            == 404
        assert APIToken.objects.filter(pk=token.pk).exists()


class TestAuditLog:
    def _topic(self, team, store):
        return Topic.objects.create(name=f"audit.t{next(_counter)}", team=team, store=store)

    def test_every_path_writes_one_entry(self, payments, store, personas, admin_client):
        bob = client_for(personas["bob"])
        # page
        bob.post(reverse("topics:topic_add"), {"name": "via.page", "team": payments.pk, "store": store.pk,
                                              "lifecycle": "active"})
        # API
        bob.post(reverse("api:topic-list"), {"name": "via.api", "team": payments.pk, "store": store.pk},
                 content_type="application/json")
        # admin
        admin_client.post(reverse("admin:topics_topic_add"), {"name": "via.admin", "team": payments.pk,
                                                               "store": store.pk, "lifecycle": "active"})
        # bulk delete
        doomed = [self._topic(payments, store) for _ in range(2)]
        bob.post(reverse("topics:topic_bulk_delete"), {"pk": [t.pk for t in doomed], "confirm": "1"})
        entries = AuditEntry.objects.filter(object_type__model="topic")
        for name, actor in (("via.page", "bob"), ("via.api", "bob"), ("via.admin", "admin")):
            entry = entries.get(object_repr=name, action="create")
            assert entry.actor_name == actor and entry.after["name"] == name and entry.request_id
        deleted = entries.filter(action="delete", object_id__in=[str(t.pk) for t in doomed])
        assert deleted.count() == 2 and {e.actor_name for e in deleted} == {"bob"}
        assert all(e.before["name"].startswith("audit.t") and e.after is None for e in deleted)

    def test_an_update_records_before_and_after(self, payments, store, personas):
        topic = self._topic(payments, store)
        with audit_context(user=personas["bob"]):
            topic.description = "new"
            topic.save()
        entry = AuditEntry.objects.filter(action="update").get()
        assert entry.before["description"] == "" and entry.after["description"] == "new"
        assert [c[0] for c in entry.changes() if c[0] != "updated"] == ["description"]

    def test_changes_outside_a_request_are_attributed_to_the_system(self, payments, store):
        topic = self._topic(payments, store)
        assert AuditEntry.objects.get(object_id=str(topic.pk), object_type__model="topic").actor_name == "system"

    def test_outsiders_do_not_see_another_teams_log(self, payments, store, personas):
        self._topic(payments, store)
        seen_by_carol = client_for(personas["carol"]).get(reverse("api:auditentry-list")).json()["results"]
        seen_by_bob = client_for(personas["bob"]).get(reverse("api:auditentry-list")).json()["results"]
        assert seen_by_carol and {e["team"] for e in seen_by_carol} == {personas["carol"].memberships.get().team_id}
        assert payments.pk in {e["team"] for e in seen_by_bob}
        entry = AuditEntry.objects.filter(team=payments).first()
        assert client_for(personas["carol"]).get(entry.get_absolute_url()).status_code == 404

    def test_the_log_is_read_only_in_the_api(self, payments, store, personas):
        self._topic(payments, store)
        entry = AuditEntry.objects.first()
        client = client_for(personas["sam"])
        assert client.delete(reverse("api:auditentry-detail", args=[entry.pk])).status_code == 405
        assert client.post(reverse("api:auditentry-list"), {}).status_code == 405

    def test_global_log_filters_by_action_and_object_type(self, payments, store, personas):
        topic = self._topic(payments, store)
        topic.delete()
        html = client_for(personas["bob"]).get(reverse("meshadmin:auditentry_list"),
                                               {"action": "delete", "object_type": "topics.topic"}).content.decode()
        assert "1 result" in html


def test_health_endpoint_needs_no_login(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_home_shows_counts_and_my_teams(payments, store, personas):
    Topic.objects.create(name="orders.created", team=payments, store=store)
    response = client_for(personas["bob"]).get(reverse("meshadmin:home"))
    html = response.content.decode()
    assert 'data-testid="topic-count">1<' in html and "Payments" in html


def test_team_page_warns_when_the_team_has_no_owner(payments, personas):
    Membership.objects.filter(team=payments, role=Membership.OWNER).delete()
    html = client_for(personas["bob"]).get(payments.get_absolute_url()).content.decode()
    assert 'data-testid="finding-' in html
