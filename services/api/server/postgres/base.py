"""Django's PostgreSQL backend with a health check that costs no round trip when nothing is wrong.

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of every request that
reuses a persistent connection. That round trip was ~0.5 ms of a ~9 ms publishPost (profiled:
the first hop of a request after an idle gap is the dearest one). A server that ends a
connection (a restart, `pg_terminate_backend`, idle_session_timeout) says so on the socket: a
FATAL message, then EOF. So a connection used moments ago whose socket has nothing to read is
healthy as far as a `SELECT 1` could tell; one with anything pending gets Django's own check,
which reads it and decides. A peer that vanished without a word (a middlebox dropping an idle
flow) shows nothing on the socket: a connection idle for more than QUIET_CHECK_SECONDS gets
Django's round trip too, long before any such idle timeout (minutes).

Only the once-per-request health check is changed: after an error (`errors_occurred`) Django's
round-trip check still runs."""

import select
import time

from django.db.backends.postgresql import base
from psycopg import pq

# A connection idle longer than this gets Django's SELECT 1 rather than the socket check.
QUIET_CHECK_SECONDS = 30.0


class DatabaseWrapper(base.DatabaseWrapper):
    # When Django last looked at this connection between requests, and the time before that:
    # it does at request_finished and again at request_started, so at a request's first query
    # the earlier one is when the previous request ended (0: never, e.g. outside requests).
    _boundaries = (0.0, 0.0)

    def close_if_unusable_or_obsolete(self):
        super().close_if_unusable_or_obsolete()
        self._boundaries = (self._boundaries[1], time.monotonic())

    def close_if_health_check_failed(self):
        if not self.pool and self.connection is not None and self.health_check_enabled and not self.health_check_done:
            idle = time.monotonic() - self._boundaries[0]
            if idle < QUIET_CHECK_SECONDS and self._idle_and_quiet():
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
