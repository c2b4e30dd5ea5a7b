"""A synchronous Redis client for what is not the channel layer (readiness, login throttling):
REDIS_URL, or, with REDIS_SENTINELS, the current master as the sentinels say (a failover is
followed on the next connection)."""

import redis
from django.conf import settings
from redis.sentinel import Sentinel


def connect(*, timeout: float, **options) -> redis.Redis:
    if settings.REDIS_SENTINELS:
        sentinel = Sentinel(
            settings.REDIS_SENTINELS,
            sentinel_kwargs={"password": settings.REDIS_SENTINEL_PASSWORD or None, "socket_timeout": timeout},
        )
        layer = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
        return sentinel.master_for(
            settings.REDIS_SENTINEL_MASTER,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            db=layer["db"],
            password=layer["password"],
            **options,
        )
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout, **options)
