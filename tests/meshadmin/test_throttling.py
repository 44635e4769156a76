"""Sign-ins are throttled per account and address (back-off) and per address; the real user from
elsewhere is never locked out; the API answers 429 with Retry-After per token and to token guesses."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from meshadmin.models import APIToken
from meshadmin.throttling import LoginGate
from tests.portal_support.personas import PASSWORD

pytestmark = pytest.mark.django_db


def address() -> str:
    """An address of this test's own: the throttle's state lives in the shared cache."""
    raw = uuid.uuid4().bytes
    return f"10.{raw[0]}.{raw[1]}.{raw[2]}"


def sign_in(client: Client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_fifty_wrong_passwords_then_the_right_one_does_not_sign_in_at_once(alice):
    attacker = Client(REMOTE_ADDR=address())
    for _ in range(50):
        assert sign_in(attacker, "alice", "guess").status_code in (200, 429)
        assert not signed_in(attacker)
    response = sign_in(attacker, "alice", PASSWORD)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many failed sign-ins for this account from your address" in response.content.decode()
    assert not signed_in(attacker)


def test_the_real_user_from_another_address_is_not_locked_out(alice):
    attacker = Client(REMOTE_ADDR=address())
    for _ in range(50):
        sign_in(attacker, "alice", "guess")
    alice_at_home = Client(REMOTE_ADDR=address())
    response = sign_in(alice_at_home, "alice", PASSWORD)
    assert response.status_code == 302
    assert signed_in(alice_at_home)


def test_a_few_typos_cost_nothing_and_a_success_clears_them(alice):
    client = Client(REMOTE_ADDR=address())
    for _ in range(4):
        assert sign_in(client, "alice", "typo").status_code == 200
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert sign_in(client, "alice", "typo").status_code == 200  # counted from zero again
    assert sign_in(client, "alice", PASSWORD).status_code == 302


def test_one_address_spraying_many_accounts_is_blocked_whatever_the_account(settings, alice, bob):
    settings.MESH_LOGIN_ADDRESS_FAILURES = 10
    sprayer = Client(REMOTE_ADDR=address())
    for n in range(10):
        sign_in(sprayer, f"user{n}", "guess")  # one try per account: no pair is slowed down
    response = sign_in(sprayer, "bob", PASSWORD)
    assert response.status_code == 429 and not signed_in(sprayer)
    assert sign_in(Client(REMOTE_ADDR=address()), "bob", PASSWORD).status_code == 302


def test_the_back_off_doubles_per_failure_is_capped_and_ends(settings):
    settings.MESH_LOGIN_FREE_FAILURES = 3
    settings.MESH_LOGIN_BACKOFF_MAX_SECONDS = 60
    settings.MESH_LOGIN_ADDRESS_FAILURES = 1000
    gate = LoginGate(f"user-{uuid.uuid4().hex}", address())
    now = 1_000_000.0
    waits = []
    for n in range(10):
        gate.failed(now=now + n)
        waits.append(gate.wait(now=now + n))
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert gate.wait(now=now + 9 + 59) == 1
    assert gate.wait(now=now + 9 + 60) == 0  # then one more guess, which costs the maximum again
    gate.succeeded()
    assert gate.wait(now=now + 9) == 0


def test_the_admin_login_is_behind_the_same_gate(sam):
    attacker = Client(REMOTE_ADDR=address())
    for _ in range(10):
        attacker.post("/admin/login/", {"username": "sam", "password": "guess"})
    response = attacker.post("/admin/login/", {"username": "sam", "password": PASSWORD})
    assert "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in attacker.session


def _token(user: User) -> str:
    token = APIToken(user=user)
    key = token.generate()
    token.save()
    return key


def test_the_api_answers_429_with_retry_after_per_token(settings, bob):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api": "3/minute"}}
    first, second = _token(bob), _token(bob)
    client = Client(REMOTE_ADDR=address())
    for _ in range(3):
        assert client.get("/api/v1/topics/", HTTP_AUTHORIZATION=f"Token {first}").status_code == 200
    response = client.get("/api/v1/topics/", HTTP_AUTHORIZATION=f"Token {first}")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
    assert "throttled" in response.json()["detail"].lower()
    assert client.get("/api/v1/topics/", HTTP_AUTHORIZATION=f"Token {second}").status_code == 200


def test_token_guesses_get_429_with_retry_after(settings, bob):
    settings.MESH_API_AUTH_FAILURES = 5
    guesser = Client(REMOTE_ADDR=address())
    for n in range(5):
        response = guesser.get("/api/v1/topics/", HTTP_AUTHORIZATION=f"Token mat_guess{n:03d}_xyz")
        assert response.status_code == 401
    response = guesser.get("/api/v1/topics/", HTTP_AUTHORIZATION=f"Token {_token(bob)}")
    assert response.status_code == 429  # not even a right token, from this address, for now
    assert int(response["Retry-After"]) > 0
    elsewhere = Client(REMOTE_ADDR=address())
    assert elsewhere.get("/api/v1/topics/", HTTP_AUTHORIZATION=f"Token {_token(bob)}").status_code == 200
