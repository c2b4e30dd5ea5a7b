"""What a client is told when a dependency fails inside a GraphQL operation: that it is
temporary, not the server's hosts and ports (the log keeps those)."""

from django import db
from redis.exceptions import RedisError

OUTAGE_MESSAGE = "Service temporarily unavailable: try again shortly"


def is_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, (db.Error, RedisError, OSError))


class ServiceUnavailable(Exception):
    def __init__(self) -> None:
        super().__init__(OUTAGE_MESSAGE)
