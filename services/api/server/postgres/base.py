"""Django's PostgreSQL backend with a health check that costs no round trip when nothing is wrong.

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of every request that
reuses a persistent connection. That round trip was ~0.5 ms of a ~9 ms publishPost (profiled:
the first hop of a request after an idle gap is the dearest one). A server that ends a
connection (a restart, `pg_terminate_backend`, idle_session_timeout) says so on the socket: a
FATAL message, then EOF. So an idle connection whose socket has nothing to read is healthy as far
as a `SELECT 1` could tell; one with anything pending gets Django's own check, which reads it and
decides. A peer gone silently (no FIN) would stall `SELECT 1` as long as the real query, and
CONN_MAX_AGE (60 s) closes connections long before a middlebox's idle timeout drops them.

Only the once-per-request health check is changed: after an error (`errors_occurred`) Django's
round-trip check still runs."""

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if not self.pool and self.connection is not None and self.health_check_enabled and not self.health_check_done:
            if self._idle_and_quiet():
                self.health_check_done = True
                return
        super().close_if_health_check_failed()

    def _idle_and_quiet(self) -> bool:
        connection = self.connection
        if connection.closed or connection.broken or connection.info.transaction_status != pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()  # not select(): a Daphne node's descriptors run past FD_SETSIZE
        poller.register(connection.fileno(), select.POLLIN)
        return not poller.poll(0)
