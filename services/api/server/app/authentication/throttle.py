"""Login throttling: repeated failures lock a username, or a client address, out for a while.

Counters live in Redis (REDIS_URL, or the Sentinel master), so every gunicorn worker on every node sees the same ones.
A failure (any `authenticate()` that returns no user: the GraphQL login, the admin form) counts
against the username and the client address; the first failure opens a window of
LOGIN_LOCKOUT_SECONDS, and once a counter reaches its limit inside that window, logins for that
username (or from that address) are refused *before* the password is checked, so a locked-out
guesser costs no password hashing. A successful login clears the username's counter.

If Redis is unreachable, logins go on unthrottled (with a warning): an outage of the channel
layer's Redis must not lock everybody out, nor slow every login down by a timeout.
"""

import functools
import hashlib
import logging
import time

import redis
from django.conf import settings
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.retry import Retry

from server import redis_client

logger = logging.getLogger(__name__)

KEY_PREFIX = "postwire:login-failures:"
# After a Redis error the throttle is skipped for this long, so an outage costs one timeout per
# process every few seconds, not one per login.
UNAVAILABLE_SECONDS = 5.0
_unavailable_until = 0.0


class LoginThrottled(PermissionDenied):
    def __init__(self, seconds: int):
        self.seconds = max(1, seconds)
        super().__init__(f"Too many failed login attempts; try again in {self.seconds} seconds.")


@functools.cache
def _redis() -> redis.Redis:
    # Short timeouts and no retries: a login waits at most about a second for a lost Redis.
    return redis_client.connect(timeout=1.0, retry=Retry(NoBackoff(), 0))


def _execute(queue) -> list | None:
    """The replies to the commands `queue(pipeline)` adds, or None when Redis is unavailable."""
    global _unavailable_until
    if time.monotonic() < _unavailable_until:
        return None
    try:
        with _redis().pipeline(transaction=False) as pipe:
            queue(pipe)
            return pipe.execute()
    except redis.RedisError as exc:
        _unavailable_until = time.monotonic() + UNAVAILABLE_SECONDS
        logger.warning(
            "login throttle unavailable (Redis: %s); logins not throttled for %s s", exc, UNAVAILABLE_SECONDS
        )
        return None


def client_address(request) -> str:
    """The client's address. nginx overwrites X-Real-IP with the address it saw (the real client's
    with POSTWIRE_NGINX_REAL_IP_FROM behind a proxy); gunicorn is reachable only through nginx."""
    if request is None:
        return ""
    return request.META.get("HTTP_X_REAL_IP") or request.META.get("REMOTE_ADDR") or ""


def _keys(request, username: str) -> list[tuple[str, int]]:
    """(counter key, limit) for each enabled limit; usernames are hashed (no PII in Redis keys)."""
    keys = []
    if settings.LOGIN_MAX_FAILURES > 0 and username:
        digest = hashlib.sha256(username.lower().encode()).hexdigest()[:32]
        keys.append((f"{KEY_PREFIX}user:{digest}", settings.LOGIN_MAX_FAILURES))
    address = client_address(request)
    if settings.LOGIN_MAX_FAILURES_PER_IP > 0 and address:
        keys.append((f"{KEY_PREFIX}ip:{address}", settings.LOGIN_MAX_FAILURES_PER_IP))
    return keys


def check(request, username: str) -> None:
    """Raise LoginThrottled if this username or address has used up its failures."""
    keys = _keys(request, username)

    def queue(pipe):
        for key, _ in keys:
            pipe.get(key)
            pipe.ttl(key)

    replies = _execute(queue) if keys else None
    if replies is None:
        return
    for (_, limit), count, ttl in zip(keys, replies[::2], replies[1::2], strict=True):
        if count is not None and int(count) >= limit:
            raise LoginThrottled(ttl if ttl > 0 else settings.LOGIN_LOCKOUT_SECONDS)


def record_failure(request, username: str) -> None:
    keys = _keys(request, username)

    def queue(pipe):
        for key, _ in keys:
            # The window starts at the first failure; INCR keeps the key's expiry.
            pipe.set(key, 0, ex=settings.LOGIN_LOCKOUT_SECONDS, nx=True)
            pipe.incr(key)

    replies = _execute(queue) if keys else None
    if replies is None:
        return
    for (key, limit), count in zip(keys, replies[1::2], strict=True):
        if count == limit:
            subject = "username" if ":user:" in key else "address"
            logger.warning(
                "login locked for %s seconds: %d failures for %s %r from %s",
                settings.LOGIN_LOCKOUT_SECONDS,
                count,
                subject,
                username,
                client_address(request),
            )


def reset(username: str) -> None:
    keys = [key for key, _ in _keys(None, username)]
    if keys:
        _execute(lambda pipe: pipe.delete(*keys))


class LoginThrottleBackend(BaseBackend):
    """First in AUTHENTICATION_BACKENDS: refuses a locked-out login before ModelBackend hashes
    the password (Django's authenticate() stops at PermissionDenied), authenticates nobody."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        check(request, username or "")
        return None


@receiver(user_login_failed)
def _count_failure(sender, credentials, request=None, **kwargs):
    record_failure(request, credentials.get("username") or "")


@receiver(user_logged_in)
def _clear_failures(sender, request, user, **kwargs):
    reset(user.get_username())
