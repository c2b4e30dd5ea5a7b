"""server.app.authentication.sessions: Django's database sessions, with logins from before
postwire's backend kept. The same rows and rules as django.contrib.sessions.backends.db (against
the real PostgreSQL)."""

import datetime
import json

import pytest
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from server.app.authentication.backends import DJANGO_MODEL_BACKEND, MODEL_BACKEND
from server.app.authentication.sessions import SessionStore

pytestmark = pytest.mark.django_db


def test_a_session_reads_back_as_djangos_store_reads_it():
    written = SessionStore()
    written["cart"] = [1, "two", {"3": None}]
    written.save()
    ours, django = SessionStore(written.session_key), db.SessionStore(written.session_key)
    assert ours.load() == django.load() == {"cart": [1, "two", {"3": None}]}
    assert ours.session_key == written.session_key


@pytest.mark.parametrize("key", ["expired", "missing", None])
def test_an_expired_or_unknown_session_starts_afresh(key):
    if key == "expired":
        stale = SessionStore()
        stale["x"] = 1
        stale.save()
        Session.objects.filter(pk=stale.session_key).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
        key = stale.session_key
    ours, django = SessionStore(key), db.SessionStore(key)
    assert ours.load() == django.load() == {}
    assert ours.session_key is None and django.session_key is None  # a new key on the next save


def test_a_login_from_before_postwires_backend_stays_logged_in():
    user = User.objects.create_user("early", password="pw-123456789")
    client = Client()
    client.force_login(user, backend=DJANGO_MODEL_BACKEND)  # as sessions were written until now
    stored = Session.objects.get(pk=client.cookies["sessionid"].value).get_decoded()
    assert stored[BACKEND_SESSION_KEY] == DJANGO_MODEL_BACKEND
    response = client.post("/graphql", json.dumps({"query": "{ me { username } }"}), content_type="application/json")
    assert response.json()["data"]["me"] == {"username": "early"}
    assert SessionStore(client.cookies["sessionid"].value).load()[BACKEND_SESSION_KEY] == MODEL_BACKEND


def test_a_new_login_names_postwires_backend():
    User.objects.create_user("fresh", password="pw-123456789")
    client = Client()
    assert client.login(username="fresh", password="pw-123456789")
    stored = Session.objects.get(pk=client.cookies["sessionid"].value).get_decoded()
    assert stored[BACKEND_SESSION_KEY] == MODEL_BACKEND
    response = client.post("/graphql", json.dumps({"query": "{ me { username } }"}), content_type="application/json")
    assert response.json()["data"]["me"] == {"username": "fresh"}
