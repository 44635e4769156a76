"""Personas, as in Healthchecks' tests: each name says what the person may do.

- alice: owner of Payments
- bob: member of Payments
- dave: viewer of Payments
- carol: member of Logistics (an outsider to Payments)
- sam: staff
- olga: signed in, in no team at all (an outsider to every team; not in ``personas``)
- erin: owner of Compliance, in neither Payments nor Logistics (not in ``personas``; ``people``
  is ``personas`` and erin)
- anonymous: the ``client`` fixture, signed in as nobody
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in
from django.test import Client

from meshadmin import audit, celery_app
from meshadmin.models import Membership, Team
from topics.models import EventStore

PASSWORD = "correct horse battery staple"


@pytest.fixture
def payments(db) -> Team:
    return Team.objects.create(name="Payments", slug="payments")


@pytest.fixture
def logistics(db) -> Team:
    return Team.objects.create(name="Logistics", slug="logistics")


def make_member(username: str, team: Team | None, role: str | None, **extra) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, **extra)
    if team is not None:
        Membership.objects.create(team=team, user=user, role=role)
    return user


@pytest.fixture
def alice(payments) -> User:
    return make_member("alice", payments, Membership.OWNER)


@pytest.fixture
def bob(payments) -> User:
    return make_member("bob", payments, Membership.MEMBER)


@pytest.fixture
def dave(payments) -> User:
    return make_member("dave", payments, Membership.VIEWER)


@pytest.fixture
def carol(logistics) -> User:
    return make_member("carol", logistics, Membership.MEMBER)


@pytest.fixture
def sam(db) -> User:
    return make_member("sam", None, None, is_staff=True, is_superuser=True)


@pytest.fixture
def olga(db) -> User:
    return make_member("olga", None, None)


@pytest.fixture
def erin(db) -> User:
    return make_member("erin", Team.objects.create(name="Compliance", slug="compliance"), Membership.OWNER)


@pytest.fixture
def personas(alice, bob, carol, dave, sam) -> dict[str, User]:
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "sam": sam}


@pytest.fixture
def people(personas, erin) -> dict[str, User]:
    return {**personas, "erin": erin}


@pytest.fixture
def store(db) -> EventStore:
    return EventStore.objects.create(name="default")


def client_for(user: User | None) -> Client:
    """A test client signed in as ``user``. Signing in is the test's set-up, not an event of the
    test: like the factories' bulk_create it writes no audit entry, so a test can count the
    entries its own requests write (real sign-ins are audited: tests/meshadmin/test_audit_paths.py)."""
    client = Client()
    if user is not None:
        user_logged_in.disconnect(dispatch_uid=audit.LOGGED_IN_UID)
        try:
            client.force_login(user)
        finally:
            audit.connect()
    return client


@pytest.fixture
def as_user(personas):
    """``as_user("bob")`` is a test client signed in as bob."""
    return lambda name: client_for(personas[name])


@pytest.fixture
def eager_celery():
    """Tasks enqueued with .delay() run at once, in this process, and raise their errors."""
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_eager_propagates
    conf.task_always_eager = conf.task_eager_propagates = True
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved
