"""server.app.authentication.backends.ModelBackend: the user a session names, loaded without the
ORM, is the user Django's ModelBackend loads (against the real PostgreSQL)."""

import pytest
from django.contrib.auth import backends as django_backends
from django.contrib.auth.models import User

from server.app.authentication.backends import ModelBackend

pytestmark = pytest.mark.django_db


def fields(user) -> list:
    return [getattr(user, f.attname) for f in User._meta.concrete_fields]


def test_a_session_user_is_loaded_as_djangos_backend_loads_it():
    user = User.objects.create_user("reader", email="r@example.com", password="pw-123456789", first_name="Ré")
    ours, django = ModelBackend().get_user(str(user.pk)), django_backends.ModelBackend().get_user(str(user.pk))
    assert fields(ours) == fields(django) and ours.pk == user.pk
    assert (ours._state.adding, ours._state.db) == (False, "default")  # a saved row, as the ORM's
    assert ours.get_session_auth_hash() == user.get_session_auth_hash()


def test_who_is_not_loaded():
    inactive = User.objects.create_user("gone", password="pw-123456789", is_active=False)
    backend = ModelBackend()
    assert backend.get_user(str(inactive.pk)) is None
    assert django_backends.ModelBackend().get_user(str(inactive.pk)) is None  # the same rule
    assert backend.get_user(str(inactive.pk + 1000)) is None
    assert backend.get_user("not-a-number") is None  # a forged session: anonymous, not a 500


def test_permissions_are_djangos():
    user = User.objects.create_user("plain", password="pw-123456789")
    assert issubclass(ModelBackend, django_backends.ModelBackend)
    assert ModelBackend().get_all_permissions(user) == set()
