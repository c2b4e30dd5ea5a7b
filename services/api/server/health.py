"""Liveness, readiness and metrics, answered before host validation.

Kubernetes probes and Prometheus address pods by IP, which is not in ALLOWED_HOSTS; these
paths carry no user data, so the middleware answers them first.
"""

import functools

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from server import redis_client


@functools.cache
def _redis() -> redis.Redis:
    return redis_client.connect(timeout=2)


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return f"error: {type(exc).__name__}: {exc}"
    return "ok"


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def healthz(request) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request) -> JsonResponse:
    checks = {"database": _check(_database), "redis": _check(lambda: _redis().ping())}
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"ready": ready, "node": settings.NODE_NAME, "checks": checks}, status=200 if ready else 503)


class DependencyCollector:
    """`postwire_dependency_up{check}`: 1 while this node reaches PostgreSQL / Redis, checked at
    each scrape (a dashboard and an alert read it). Single-process nodes (ws) export it; gunicorn's
    multiprocess export reads only the workers' files."""

    def collect(self):
        gauge = GaugeMetricFamily(
            "postwire_dependency_up", "Whether this node reaches the dependency", labels=["check"]
        )
        for name, probe in (("database", _database), ("redis", lambda: _redis().ping())):
            gauge.add_metric([name], 1.0 if _check(probe) == "ok" else 0.0)
        yield gauge


@functools.cache
def register_dependency_metrics() -> None:
    REGISTRY.register(DependencyCollector())


_ROUTES = {"/healthz": healthz, "/readyz": readyz, "/metrics": ExportToDjangoView}


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        register_dependency_metrics()

    def __call__(self, request):
        view = _ROUTES.get(request.path_info.rstrip("/") or "/")
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
