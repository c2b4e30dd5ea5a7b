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


_ROUTES = {"/healthz": healthz, "/readyz": readyz, "/metrics": ExportToDjangoView}


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = _ROUTES.get(request.path_info.rstrip("/") or "/")
        if view is not None and request.method in ("GET", "HEAD"):
            return view(request)
        return self.get_response(request)
