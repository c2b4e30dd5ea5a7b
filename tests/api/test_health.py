import functools

import pytest

from server import health

pytestmark = pytest.mark.django_db


def test_healthz_needs_nothing_and_ignores_the_host_header(client):
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")  # a probe by pod IP
    assert response.status_code == 200


def test_readyz_checks_postgres_and_redis(client):
    response = client.get("/readyz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_is_503_with_the_reason_when_redis_is_unreachable(client, settings, monkeypatch):
    import redis

    dead = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    monkeypatch.setattr(health, "_redis", functools.cache(lambda: dead))
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False and body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ConnectionError")


def test_metrics_are_exported(client):
    response = client.get("/metrics", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert b"postwire_live_subscriptions" in response.content
