"""Counting SQL queries from every thread (Django's CaptureQueriesContext sees one connection;
the hub queries from database_sync_to_async worker threads)."""

import contextlib
import threading

from django.db.backends import utils


@contextlib.contextmanager
def count_all_queries():
    executed: list[str] = []
    lock = threading.Lock()
    original = utils.CursorWrapper._execute_with_wrappers

    def counting(self, sql, params, many, executor):
        with lock:
            executed.append(sql)
        return original(self, sql, params, many, executor)

    utils.CursorWrapper._execute_with_wrappers = counting
    try:
        yield executed
    finally:
        utils.CursorWrapper._execute_with_wrappers = original
