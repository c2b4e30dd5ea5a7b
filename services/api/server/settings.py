"""postwire settings: everything comes from the environment, and every default is here.

.env.example at the repo root lists each variable read below with the same default (checked by
tests/api/test_settings.py); compose, Kubernetes and the local stack set only their topology.

POSTWIRE_ENV=development relaxes only what a laptop needs (an insecure default secret key, local
database/redis URLs, localhost hosts, GraphiQL). Anything else is production: a missing secret
or database URL stops the process at import time instead of running with a guessable default.
"""

import re
import socket
from pathlib import Path
from urllib.parse import unquote, urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from redis import exceptions as redis_exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

POSTWIRE_ENV = env.str("POSTWIRE_ENV", default="production")
if POSTWIRE_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"POSTWIRE_ENV must be 'development' or 'production', not {POSTWIRE_ENV!r}")
DEVELOPMENT = POSTWIRE_ENV == "development"


def _required(name: str, dev_default: str) -> str:
    """A variable production must set explicitly; development falls back to a local default."""
    value = env.str(name, default="")
    if value:
        return value
    if DEVELOPMENT:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. It is required when POSTWIRE_ENV=production (set POSTWIRE_ENV=development for local use)."
    )


SECRET_KEY = _required("DJANGO_SECRET_KEY", "insecure-development-key-do-not-use-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEVELOPMENT else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is not set (required when POSTWIRE_ENV=production).")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# WebSocket handshakes with an Origin must match ALLOWED_HOSTS; true also refuses Origin-less ones.
WS_REQUIRE_ORIGIN = env.bool("POSTWIRE_WS_REQUIRE_ORIGIN", default=False)

# Name of this process in logs, metrics and the `serverNode` query (proves which node served);
# empty: the host name (a container's or pod's own).
NODE_NAME = env.str("POSTWIRE_NODE_NAME", default="") or socket.gethostname()

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "channels",
    "strawberry_django",
    "server.app.blog",
    "server.app.authentication",
]

MIDDLEWARE = [
    # Outermost: broadcasts committed during a request leave once its response is written.
    "server.realtime.after_response.AfterResponseMiddleware",
    "server.health.HealthCheckMiddleware",  # before host validation: probes address pods by IP
    "server.node_header.NodeHeaderMiddleware",
    "server.logs.RequestIdMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "server.urls"
WSGI_APPLICATION = "server.wsgi.application"
ASGI_APPLICATION = "server.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "server" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url_config(_required("DATABASE_URL", "postgres://postwire:postwire@127.0.0.1:5432/postwire"))
}
# Persistent connections for gunicorn. Daphne (ASGI) gets 0, as Django advises: `postwire ws`
# sets DB_CONN_MAX_AGE from DB_CONN_MAX_AGE_WS (default 0).
# 600 s: opening a connection is paid by whichever request finds its connection too old, and it
# costs more than most requests (docs/performance.md).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("postwire needs PostgreSQL: DATABASE_URL must be a postgres:// URL.")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default="") or str(BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "server" / "static"]
# Images serve what collectstatic gathered at build time; a checkout (the local stack) has not
# collected anything, so in development WhiteNoise also serves straight from the finders.
WHITENOISE_USE_FINDERS = DEVELOPMENT

# --- Security -------------------------------------------------------------------------------
# Cookies are Secure unless in development (compose and the local stack serve plain HTTP).
_secure_cookies = env.bool("DJANGO_SECURE_COOKIES", default=not DEVELOPMENT)
# Django's database sessions (server/app/authentication/sessions.py keeps logins from before
# postwire's authentication backend).
SESSION_ENGINE = "server.app.authentication.sessions"
SESSION_COOKIE_SECURE = _secure_cookies
CSRF_COOKIE_SECURE = _secure_cookies
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# nginx terminates TLS (or a load balancer in front of it) and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env.bool("DJANGO_USE_X_FORWARDED_HOST", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
CSRF_FAILURE_VIEW = "server.urls.csrf_failure"
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_MAX_BODY_BYTES", default=1024 * 1024)

# --- GraphQL ---------------------------------------------------------------------------------
GRAPHIQL_ENABLED = env.bool("GRAPHIQL_ENABLED", default=DEVELOPMENT)
# Introspection (`__schema`, `__type`) is what GraphiQL runs first, so it follows GraphiQL.
GRAPHQL_INTROSPECTION = env.bool("POSTWIRE_GRAPHQL_INTROSPECTION", default=GRAPHIQL_ENABLED)
if GRAPHIQL_ENABLED and not GRAPHQL_INTROSPECTION:
    raise ImproperlyConfigured("GRAPHIQL_ENABLED needs POSTWIRE_GRAPHQL_INTROSPECTION: GraphiQL introspects the schema")
# Cost limits on every document, over HTTP and WebSocket. Each refusal is a GraphQL error naming
# the limit (over graphql-transport-ws a refused subscription closes with 4400 and that text).
GRAPHQL_MAX_DEPTH = env.int("POSTWIRE_GRAPHQL_MAX_DEPTH", default=10)
GRAPHQL_MAX_ALIASES = env.int("POSTWIRE_GRAPHQL_MAX_ALIASES", default=15)
GRAPHQL_MAX_ROOT_FIELDS = env.int("POSTWIRE_GRAPHQL_MAX_ROOT_FIELDS", default=10)
GRAPHQL_MAX_TOKENS = env.int("POSTWIRE_GRAPHQL_MAX_TOKENS", default=2000)
STRAWBERRY_DJANGO = {"MUTATIONS_DEFAULT_HANDLE_ERRORS": True}

# --- Channel layer and fan-out ---------------------------------------------------------------
REDIS_URL = _required("REDIS_URL", "redis://127.0.0.1:6379/0")
# The layer's group membership expires after this; the hub re-joins well inside it.
CHANNEL_GROUP_EXPIRY = env.int("CHANNEL_GROUP_EXPIRY", default=86400)
_redis_host = {
    "address": REDIS_URL,
    # Must exceed channels_redis's 5 s blocking pop, or idle receivers die with "Timeout reading".
    "socket_timeout": env.float("REDIS_SOCKET_TIMEOUT", default=15.0),
    "socket_connect_timeout": env.float("REDIS_CONNECT_TIMEOUT", default=5.0),
    # redis-py's asyncio pool raises MaxConnectionsError when full; size it on purpose.
    "max_connections": env.int("REDIS_MAX_CONNECTIONS", default=1000),
    "health_check_interval": 30,
    # After a Redis restart every pooled connection is dead; retry once reconnected instead of
    # failing the first publish or group_add that picks one up.
    "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
    "retry_on_error": [redis_exceptions.ConnectionError],
}
# Redis Sentinel (high availability): with REDIS_SENTINELS ("host:port,host:port") the layer and
# the readiness check ask the sentinels for the current master of REDIS_SENTINEL_MASTER, and follow
# a failover; REDIS_URL then supplies only the database number and the password.
REDIS_SENTINELS = [
    (host, int(port))
    for host, _, port in (
        item.strip().rpartition(":") for item in env.str("REDIS_SENTINELS", default="").split(",") if item.strip()
    )
]
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="postwire")
REDIS_SENTINEL_PASSWORD = env.str("REDIS_SENTINEL_PASSWORD", default="")
if REDIS_SENTINELS:
    _url = urlsplit(REDIS_URL)
    _redis_host.pop("address")
    _redis_host.update(
        sentinels=REDIS_SENTINELS,
        master_name=REDIS_SENTINEL_MASTER,
        sentinel_kwargs={"password": REDIS_SENTINEL_PASSWORD or None, "socket_timeout": 2.0},
        db=int((_url.path or "/0").lstrip("/") or 0),
        password=unquote(_url.password) if _url.password else None,
    )
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="core")
if CHANNEL_LAYER == "core":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_redis_host],
                "group_expiry": CHANNEL_GROUP_EXPIRY,
                "capacity": env.int("CHANNEL_CAPACITY", default=1000),
                "expiry": 60,
            },
        }
    }
elif CHANNEL_LAYER == "pubsub":
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [_redis_host]},
        }
    }
else:
    raise ImproperlyConfigured(f"CHANNEL_LAYER must be 'core' or 'pubsub', not {CHANNEL_LAYER!r}")

# Group every Daphne hub joins; one message per publish reaches each process once.
POSTS_CHANNEL = env.str("POSTS_CHANNEL", default="posts_notifications")
# How live events reach a node's subscribers (server.realtime.fanout): "direct", the hub executes
# each event once per distinct subscription and writes every subscriber's message itself;
# "strawberry", strawberry executes and sends per subscriber (the plain path, kept to compare, byte
# for byte and in the benchmark). Either way the node's one hub is the group's only member.
DELIVERY = env.str("POSTWIRE_DELIVERY", default="direct")
if DELIVERY not in {"direct", "strawberry"}:
    raise ImproperlyConfigured(f"POSTWIRE_DELIVERY must be 'direct' or 'strawberry', not {DELIVERY!r}")
# Empty: computed from the expiry, so that a short expiry cannot outlive a pinned interval.
_rejoin = env.str("POSTWIRE_HUB_REJOIN_SECONDS", default="")
HUB_REJOIN_SECONDS = float(_rejoin) if _rejoin else min(3600.0, CHANNEL_GROUP_EXPIRY / 4)
HUB_CATCHUP_SECONDS = env.float("POSTWIRE_HUB_CATCHUP_SECONDS", default=30.0)
# How often the hub checks that Redis still lists it in the group (lost on a Redis restart).
HUB_CHECK_SECONDS = env.float("POSTWIRE_HUB_CHECK_SECONDS", default=5.0)
HUB_SUBSCRIBER_QUEUE = env.int("POSTWIRE_HUB_SUBSCRIBER_QUEUE", default=1000)
# Days of PostEvent history `manage.py prune_events` keeps: how long a client may stay away and
# still resume with `after` (older resumes are told to refetch).
EVENT_RETENTION_DAYS = env.int("POSTWIRE_EVENT_RETENTION_DAYS", default=7)
if EVENT_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(f"POSTWIRE_EVENT_RETENTION_DAYS must be at least 1, not {EVENT_RETENTION_DAYS}")
# A WebSocket that has not sent connection_init this many seconds after opening is closed (4408),
# on both protocols; subscriptions (operations) one socket may hold at once.
WS_CONNECTION_INIT_TIMEOUT = env.float("POSTWIRE_WS_CONNECTION_INIT_TIMEOUT", default=10.0)
WS_MAX_SUBSCRIPTIONS = env.int("POSTWIRE_WS_MAX_SUBSCRIPTIONS", default=100)
# A socket holding more unsent bytes than this is too slow: its subscriptions end with an error
# telling the client to resubscribe with `after` (bounds a stalled reader's memory).
WS_MAX_UNSENT_BYTES = env.int("POSTWIRE_WS_MAX_UNSENT_BYTES", default=512 * 1024)
# SO_SNDBUF for each WebSocket (0: the kernel autotunes it, up to net.ipv4.tcp_wmem's maximum).
# The unsent-bytes limit counts only what the kernel did not take, so this bounds the rest.
WS_SEND_BUFFER_BYTES = env.int("POSTWIRE_WS_SEND_BUFFER_BYTES", default=0)
# On SIGTERM a Daphne node stops accepting, closes its sockets (1012, "reconnect and resume with
# after") in shuffled batches at no less than WS_DRAIN_RATE per second and within
# WS_DRAIN_SECONDS, leaves the group and exits (server/realtime/drain.py). Keep the orchestrator's
# grace period (terminationGracePeriodSeconds, stop_grace_period) above WS_DRAIN_SECONDS + 5.
WS_DRAIN_SECONDS = env.float("POSTWIRE_WS_DRAIN_SECONDS", default=10.0)
WS_DRAIN_RATE = env.float("POSTWIRE_WS_DRAIN_RATE", default=500.0)
# Python's cyclic GC thresholds for the Daphne role (see server/asgi.py); empty keeps Python's.
_gc = env.str("POSTWIRE_WS_GC_THRESHOLDS", default="50000,20,100").replace(" ", "")
if _gc and not re.fullmatch(r"\d+,\d+,\d+", _gc):
    raise ImproperlyConfigured(f"POSTWIRE_WS_GC_THRESHOLDS must be three integers (e.g. 50000,20,100), not {_gc!r}")
WS_GC_THRESHOLDS = tuple(int(t) for t in _gc.split(",")) if _gc else ()

# --- Staff bootstrap (manage.py ensure_staff_user) -------------------------------------------
BOOTSTRAP_USERNAME = env.str("POSTWIRE_BOOTSTRAP_USERNAME", default="")
BOOTSTRAP_PASSWORD = env.str("POSTWIRE_BOOTSTRAP_PASSWORD", default="")
BOOTSTRAP_EMAIL = env.str("POSTWIRE_BOOTSTRAP_EMAIL", default="")
# An existing user's password is left alone (it may have been changed since); true resets it to
# POSTWIRE_BOOTSTRAP_PASSWORD at the next run.
BOOTSTRAP_RESET_PASSWORD = env.bool("POSTWIRE_BOOTSTRAP_RESET_PASSWORD", default=False)

# --- Login throttling (server/app/authentication/throttle.py) --------------------------------
# After LOGIN_MAX_FAILURES failed logins for one username, or LOGIN_MAX_FAILURES_PER_IP from one
# client address, within LOGIN_LOCKOUT_SECONDS of the first, logins for it are refused without
# checking the password until that window ends. Counted in Redis (REDIS_URL); 0 disables a limit.
LOGIN_MAX_FAILURES = env.int("POSTWIRE_LOGIN_MAX_FAILURES", default=5)
LOGIN_MAX_FAILURES_PER_IP = env.int("POSTWIRE_LOGIN_MAX_FAILURES_PER_IP", default=20)
LOGIN_LOCKOUT_SECONDS = env.int("POSTWIRE_LOGIN_LOCKOUT_SECONDS", default=300)
if LOGIN_LOCKOUT_SECONDS < 1:
    raise ImproperlyConfigured(f"POSTWIRE_LOGIN_LOCKOUT_SECONDS must be at least 1, not {LOGIN_LOCKOUT_SECONDS}")
# The throttle's gate comes first, so a locked-out attempt never reaches password hashing.
AUTHENTICATION_BACKENDS = [
    "server.app.authentication.throttle.LoginThrottleBackend",
    "server.app.authentication.backends.ModelBackend",  # Django's, with a cheaper user load
]

# --- Logging ---------------------------------------------------------------------------------
# "json": one JSON object per line (for a log pipeline), "plain": one readable line. Either way
# each record carries the node, the request id nginx gave the request and, on a WebSocket, the
# GraphQL operation id (server/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEVELOPMENT else "json")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "server.logs.ContextFilter"}},
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s [%(node)s %(request_id)s %(operation_id)s] %(name)s: %(message)s"
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(node)s %(request_id)s %(operation_id)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
