"""The GraphQL login (and the admin's) against the real Redis: failures lock a username or an
address out for a while, without hashing the password; a failure is not a server error."""

import json
import logging
import time
from unittest import mock

import pytest
import redis
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.test import Client
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.app.authentication import throttle

pytestmark = pytest.mark.django_db

LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { username } }"
PASSWORD = "a-long-password-123"


@pytest.fixture(autouse=True)
def _clean_counters(monkeypatch):
    monkeypatch.setattr(throttle, "_unavailable_until", 0.0)
    r = throttle._redis()

    def clean():
        for key in r.scan_iter(match=f"{throttle.KEY_PREFIX}*"):
            r.delete(key)

    clean()
    yield
    clean()


@pytest.fixture
def limits(settings):
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_MAX_FAILURES_PER_IP = 5
    settings.LOGIN_LOCKOUT_SECONDS = 300
    return settings


@pytest.fixture
def alice():
    return User.objects.create_user("alice", password=PASSWORD, is_staff=True)


def login(client, username, password, address="10.1.2.3"):
    response = client.post(
        "/graphql",
        json.dumps({"query": LOGIN, "variables": {"u": username, "p": password}}),
        content_type="application/json",
        HTTP_X_REAL_IP=address,
    )
    return response.json()


def error_of(result) -> str:
    assert result.get("data") is None, result
    return result["errors"][0]["message"]


def test_a_failed_login_is_refused_and_logged_without_a_traceback(client, alice, caplog):
    caplog.set_level(logging.DEBUG)
    assert error_of(login(client, "alice", "wrong")) == "Incorrect username/password"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r for r in caplog.records if r.exc_info] == []
    assert any("Incorrect username/password" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert login(client, "alice", PASSWORD)["data"]["login"]["username"] == "alice"


def test_a_username_is_locked_out_after_its_failures_without_hashing(client, alice, limits):
    for _ in range(3):
        assert error_of(login(client, "alice", "wrong")) == "Incorrect username/password"
    # Even the right password, from another address, is refused now, before any hashing.
    with mock.patch.object(ModelBackend, "authenticate", autospec=True) as model_backend:
        message = error_of(login(client, "alice", PASSWORD, address="10.9.9.9"))
        assert not model_backend.called
    assert message.startswith("Too many failed login attempts; try again in ")
    seconds = int(message.removeprefix("Too many failed login attempts; try again in ").split()[0])
    assert 0 < seconds <= 300
    # The lockout is per username: another user logs in.
    User.objects.create_user("bob", password=PASSWORD)
    assert login(client, "bob", PASSWORD, address="10.9.9.9")["data"]["login"]["username"] == "bob"


def test_a_success_clears_the_usernames_failures(client, alice, limits):
    for _ in range(2):
        error_of(login(client, "alice", "wrong"))
    assert login(client, "alice", PASSWORD)["data"]["login"]["username"] == "alice"
    for _ in range(2):
        assert error_of(login(client, "alice", "wrong")) == "Incorrect username/password"
    assert login(Client(), "alice", PASSWORD)["data"]["login"]["username"] == "alice"


def test_an_address_is_locked_out_after_its_failures(client, alice, limits):
    for i in range(5):
        assert error_of(login(client, f"nobody-{i}", "wrong")) == "Incorrect username/password"
    assert error_of(login(client, "alice", PASSWORD)).startswith("Too many failed login attempts")
    assert login(client, "alice", PASSWORD, address="10.4.4.4")["data"]["login"]["username"] == "alice"


def test_the_lockout_ends_with_its_window(client, alice, limits):
    limits.LOGIN_LOCKOUT_SECONDS = 4
    for _ in range(3):
        error_of(login(client, "alice", "wrong"))
    assert error_of(login(client, "alice", PASSWORD)).startswith("Too many failed login attempts; try again in ")
    time.sleep(5)
    assert login(client, "alice", PASSWORD)["data"]["login"]["username"] == "alice"


def test_the_admin_login_counts_and_is_refused_too(client, alice, limits):
    for _ in range(3):
        response = client.post("/admin/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.5.5.5")
        assert response.status_code == 200  # the form again, with its error
    refused = client.post("/admin/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.5.5.5")
    assert refused.status_code == 200 and not refused.wsgi_request.user.is_authenticated
    assert error_of(login(Client(), "alice", PASSWORD)).startswith("Too many failed login attempts")


def test_without_redis_logins_go_on_unthrottled(client, alice, limits, monkeypatch, caplog):
    dead = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(throttle, "_redis", lambda: dead)
    for _ in range(4):
        assert error_of(login(client, "alice", "wrong")) == "Incorrect username/password"
    assert login(client, "alice", PASSWORD)["data"]["login"]["username"] == "alice"
    warnings = [r for r in caplog.records if "login throttle unavailable" in r.getMessage()]
    # Tried once, then left alone for a while (an outage must not cost every login a timeout).
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
