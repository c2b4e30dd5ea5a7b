"""server.postgres: the per-request health check reads the socket instead of sending SELECT 1, and
still replaces a connection the server has ended. Against the session's real PostgreSQL, on a
connection of its own (outside the test transaction, as gunicorn's persistent ones are)."""

import select
import time

import psycopg
import pytest
from django.db import connections

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def wrapper():
    """A fresh Django connection (persistent and health-checked, as settings make them)."""
    connection = connections.create_connection("default")
    assert type(connection).__module__ == "server.postgres.base"
    connection.ensure_connection()
    assert connection.health_check_enabled
    yield connection
    connection.close()


@pytest.fixture
def observer(wrapper):
    params = wrapper.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as conn:
        yield conn


def backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def last_statement(observer, pid: int) -> str:
    return observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]


def start_a_request(wrapper):
    """What Django does between requests (close_old_connections at request_finished, then at
    request_started): the health check is due again at the next query."""
    wrapper.close_if_unusable_or_obsolete()
    wrapper.close_if_unusable_or_obsolete()
    assert not wrapper.health_check_done


def test_a_quiet_connection_is_reused_without_a_round_trip(wrapper, observer):
    pid = backend_pid(wrapper)
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 'marker'")
    start_a_request(wrapper)
    with wrapper.cursor() as cursor:  # the request's first query: the health check runs here
        assert wrapper.health_check_done
        assert last_statement(observer, pid) == "SELECT 'marker'"  # Django's check would show SELECT 1
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == pid  # the same connection


def test_a_connection_the_server_ended_is_replaced_before_the_first_query(wrapper, observer):
    pid = backend_pid(wrapper)
    start_a_request(wrapper)
    assert observer.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    deadline = time.monotonic() + 10
    while observer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, "the terminated backend is still there after 10 s"
        time.sleep(0.05)
    assert backend_pid(wrapper) != pid  # no error reached the query: a new connection served it


def test_anything_pending_on_the_socket_gets_djangos_own_check(wrapper, observer):
    """A notification (like the FATAL a server sends before it closes) makes the socket readable:
    Django's SELECT 1 then runs, reads it and, the connection being fine, keeps it."""
    pid = backend_pid(wrapper)
    with wrapper.cursor() as cursor:
        cursor.execute("LISTEN postwire_health_check_test")
    observer.execute("NOTIFY postwire_health_check_test")
    poller = select.poll()
    poller.register(wrapper.connection.fileno(), select.POLLIN)
    assert poller.poll(5000), "the notification did not arrive in 5 s"
    start_a_request(wrapper)
    with wrapper.cursor():
        assert wrapper.health_check_done
        assert last_statement(observer, pid) == "SELECT 1"
    assert backend_pid(wrapper) == pid


@pytest.mark.parametrize("between", ["requests", "no requests"])
def test_a_connection_idle_for_long_gets_djangos_own_check(wrapper, observer, monkeypatch, between):
    """A flow a middlebox dropped while idle shows nothing on the socket: after
    QUIET_CHECK_SECONDS since the last request ended (or outside requests), the round trip is
    worth its cost."""
    from server.postgres import base

    pid = backend_pid(wrapper)
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 'marker'")
    if between == "requests":
        wrapper.close_if_unusable_or_obsolete()  # the last request ended
        monkeypatch.setattr(base, "QUIET_CHECK_SECONDS", 0.2)
        time.sleep(0.3)
        wrapper.close_if_unusable_or_obsolete()  # the next one starts: its start is not "used"
    else:
        wrapper.health_check_done = False  # a reused connection with no request boundaries at all
    with wrapper.cursor():
        assert wrapper.health_check_done
        assert last_statement(observer, pid) == "SELECT 1"
    assert backend_pid(wrapper) == pid
