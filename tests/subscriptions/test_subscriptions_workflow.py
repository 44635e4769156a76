"""The subscription workflow, by page and by API: every legal step, every illegal one, and who may.

    requested ─approve→ active ⇄ paused ─revoke→ revoked      requested ─reject→ rejected
                              └────────revoke────────┘

The subscription here is Logistics' application ``tracker`` on Payments' topic
``orders.created``: carol (member of Logistics) is the application side; alice (owner) and bob
(member) of Payments are the topic side; dave is a viewer of Payments; erin is in neither team;
sam is staff.
"""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from meshadmin.models import AuditEntry
from subscriptions.models import IllegalTransition, NotPermitted, Subscription
from tests.portal_support.factories import make_app, make_subscription, make_topic
from tests.portal_support.personas import client_for

pytestmark = pytest.mark.django_db

R, A, P, X, J = (Subscription.REQUESTED, Subscription.ACTIVE, Subscription.PAUSED, Subscription.REVOKED,
                 Subscription.REJECTED)
STATES = (R, A, P, X, J)
LEGAL = {("approve", R): A, ("reject", R): J, ("pause", A): P, ("resume", P): A, ("revoke", A): X, ("revoke", P): X}
ILLEGAL = [(step, state) for step in Subscription.TRANSITIONS for state in STATES if (step, state) not in LEGAL]
#: Who may take each step; everyone else among the personas is refused.
TOPIC_SIDE, EITHER_SIDE = ("alice", "bob", "sam"), ("carol", "alice", "bob", "sam")
MAY = {"approve": TOPIC_SIDE, "reject": TOPIC_SIDE, "pause": EITHER_SIDE, "resume": EITHER_SIDE,
       "revoke": EITHER_SIDE}
EVERYONE = ("alice", "bob", "carol", "dave", "erin", "sam")
NOT_VISIBLE = ("erin",)  # sees neither team's objects: 404, not 403
REFUSED = [(step, who) for step, allowed in MAY.items() for who in EVERYONE if who not in allowed]
CHANNELS = ("page", "api")


@pytest.fixture
def make(payments, logistics, store):
    topic = make_topic(payments, store, "orders.created")
    app = make_app(logistics, "tracker")
    return lambda state: make_subscription(app, topic, state)


def take(channel: str, user, sub: Subscription, step: str, comment: str = "looks right"):
    client = client_for(user)
    if channel == "page":
        return client.post(reverse("subscriptions:subscription_transition", args=[sub.pk, step]), {"comment": comment})
    return client.post(reverse(f"api:subscription-{step}", args=[sub.pk]), {"comment": comment},
                       content_type="application/json")


def page_error(response) -> str:
    return response.content.decode()


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("step", "source"), sorted(LEGAL))
def test_every_legal_step_by_everyone_who_may_take_it(make, people, channel, step, source):
    for who in MAY[step]:
        sub = make(source)
        response = take(channel, people[who], sub, step)
        assert response.status_code == (302 if channel == "page" else 200), (who, response.content[:300])
        sub.refresh_from_db()
        assert sub.state == LEGAL[(step, source)], who
        entry = AuditEntry.objects.filter(object_id=str(sub.pk), action=AuditEntry.UPDATE).latest("pk")
        assert entry.actor_name == who and entry.before["state"] == source and entry.after["state"] == sub.state
        if channel == "api":
            assert response.json()["state"] == sub.state
        sub.delete()  # frees the one-open-subscription slot for the next person


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("step", "state"), ILLEGAL)
def test_every_illegal_step_is_refused_with_409_and_a_reason(make, people, channel, step, state):
    sub = make(state)
    response = take(channel, people["sam"], sub, step)
    assert response.status_code == 409
    message = response.json()["detail"] if channel == "api" else page_error(response)
    if state == Subscription.TRANSITIONS[step].target:
        assert f"This subscription is already {state}." in message
    else:
        assert f"This subscription is {state}: only " in message
    sub.refresh_from_db()
    assert sub.state == state
    assert not AuditEntry.objects.filter(object_id=str(sub.pk), action=AuditEntry.UPDATE).exists()


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize(("step", "who"), REFUSED)
def test_a_step_by_someone_who_may_not_take_it_is_refused(make, people, channel, step, who):
    source = next(source for (name, source) in LEGAL if name == step)
    sub = make(source)
    response = take(channel, people[who], sub, step)
    if who in NOT_VISIBLE:
        assert response.status_code == 404
    else:
        assert response.status_code == 403
        message = response.json()["detail"] if channel == "api" else page_error(response)
        assert "Only the owners and members of" in message and f"may {step} this subscription" in message
    sub.refresh_from_db()
    assert sub.state == source


@pytest.mark.parametrize(("step", "state", "message"), [
    ("approve", A, "This subscription is already active."),
    ("approve", X, "This subscription is revoked: only a requested subscription can be approved."),
    ("pause", R, "This subscription is requested: only an active subscription can be paused."),
    ("revoke", J, "This subscription is rejected: only an active or paused subscription can be revoked."),
    ("resume", A, "This subscription is already active."),
])
def test_refusals_say_why_in_words(make, personas, step, state, message):
    response = take("api", personas["alice"], make(state), step)
    assert response.json() == {"detail": message}


def test_the_wrong_side_is_told_which_team_may(make, personas):
    sub = make(R)
    response = take("api", personas["carol"], sub, "approve")
    assert response.json()["detail"] == ("Only the owners and members of Payments (the topic's team) may approve "
                                         "this subscription.")
    sub.state = A
    sub.save()
    response = take("api", personas["dave"], sub, "pause")
    assert response.json()["detail"] == ("Only the owners and members of Logistics (the application's team) or "
                                         "Payments (the topic's team) may pause this subscription.")


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_rejection_needs_a_comment(make, personas, channel):
    sub = make(R)
    response = take(channel, personas["alice"], sub, "reject", comment="  ")
    assert response.status_code == 400
    body = response.json()["comment"][0] if channel == "api" else page_error(response)
    assert "Say why you reject the request" in body
    sub.refresh_from_db()
    assert sub.state == R


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_review_records_the_reviewer_the_time_and_the_comment(make, personas, channel):
    sub = make(R)
    take(channel, personas["alice"], sub, "approve", comment="Welcome aboard.")
    sub.refresh_from_db()
    assert sub.reviewed_by == personas["alice"] and sub.reviewed_at is not None
    assert sub.reviewer_comment == "Welcome aboard."
    html = client_for(personas["carol"]).get(sub.get_absolute_url()).content.decode()
    assert "Welcome aboard." in html.split('data-testid="reviewer-comment">')[1].split("</td>")[0]


def test_an_unknown_step_is_404(make, personas):
    sub = make(R)
    url = reverse("subscriptions:subscription_transition", args=[sub.pk, "promote"])
    assert client_for(personas["sam"]).post(url).status_code == 404


def test_a_stale_copy_cannot_approve_twice(make, personas):
    """The step reads the state under a row lock, not from the caller's copy."""
    first = make(R)
    second = Subscription.objects.get(pk=first.pk)
    first.approve(by=personas["alice"])
    with pytest.raises(IllegalTransition, match="already active"):
        second.approve(by=personas["bob"])
    with pytest.raises(NotPermitted):
        second.pause(by=personas["dave"])


def test_the_page_shows_each_side_the_steps_it_may_take(make, personas):
    requested = make(R)
    alice = client_for(personas["alice"]).get(requested.get_absolute_url()).content.decode()
    carol = client_for(personas["carol"]).get(requested.get_absolute_url()).content.decode()
    assert 'data-testid="review-form"' in alice and 'data-testid="review-form"' not in carol
    requested.state = A
    requested.save()
    for who in ("alice", "carol"):
        html = client_for(personas[who]).get(requested.get_absolute_url()).content.decode()
        assert 'data-testid="step-pause"' in html and 'data-testid="step-revoke"' in html, who
        assert 'data-testid="step-resume"' not in html and 'data-testid="review-form"' not in html, who
    dave = client_for(personas["dave"]).get(requested.get_absolute_url()).content.decode()
    assert 'data-testid="step-' not in dave


class TestInboxInPlace:
    """Approve and reject from the inbox with htmx: the row is replaced, the count follows."""

    def htmx(self, user, sub, step, comment=""):
        return client_for(user).post(reverse("subscriptions:subscription_transition", args=[sub.pk, step]),
                                     {"comment": comment}, headers={"HX-Request": "true"})

    def test_approving_in_place_replaces_the_row_and_updates_the_count(self, make, personas):
        sub = make(R)
        response = self.htmx(personas["alice"], sub, "approve", "ok")
        html = response.content.decode()
        assert response.status_code == 200 and html.lstrip().startswith(f'<tr id="inbox-{sub.pk}"')
        assert 'data-testid="inbox-done">Approved.' in html and ">active<" in html
        assert 'hx-swap-oob="true"' in html and 'data-testid="inbox-count">0<' in html
        sub.refresh_from_db()
        assert sub.state == A

    def test_a_refusal_in_place_shows_the_reason_in_the_row(self, make, personas):
        sub = make(R)
        html = self.htmx(personas["alice"], sub, "reject").content.decode()
        assert 'data-testid="inbox-error"' in html and "Say why you reject the request" in html
        html = self.htmx(personas["carol"], sub, "approve").content.decode()
        assert "may approve this subscription" in html


class TestReviewMail:
    @pytest.mark.parametrize(("step", "word"), [("approve", "approved"), ("reject", "rejected")])
    def test_a_review_mails_the_application_teams_editors(self, make, personas, eager_celery,
                                                         django_capture_on_commit_callbacks, step, word):
        sub = make(R)
        with django_capture_on_commit_callbacks(execute=True):
            take("page", personas["alice"], sub, step, comment="Because.")
        [message] = mail.outbox
        assert message.to == ["carol@example.com"]
        assert message.subject == f"[Meshadmin] tracker ← orders.created: {word}"
        assert "alice" in message.body and "Because." in message.body

    def test_pausing_mails_nobody(self, make, personas, eager_celery, django_capture_on_commit_callbacks):
        sub = make(A)
        with django_capture_on_commit_callbacks(execute=True):
            take("api", personas["carol"], sub, "pause")
        assert mail.outbox == []

    def test_a_refused_step_mails_nobody(self, make, personas, eager_celery, django_capture_on_commit_callbacks):
        sub = make(A)
        with django_capture_on_commit_callbacks(execute=True):
            take("api", personas["alice"], sub, "approve")
        assert mail.outbox == []
