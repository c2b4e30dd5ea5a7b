"""AUTHENTICATION_BACKENDS' ModelBackend: Django's, with the user of a session read by one
precompiled statement.

Every logged-in request loads its user by id (django.contrib.auth.get_user calls the session's
backend), and building that `SELECT` through the ORM cost more than running it (docs/performance.md).
Authentication, permissions and the rule for who may be loaded (an active user) are Django's,
unchanged; the statement uses only Django's documented model API (`_meta`, `from_db`)."""

import functools

from django.contrib.auth import backends, get_user_model
from django.core.exceptions import ValidationError
from django.db import connections, router

# Sessions written before this backend existed name Django's; sessions.SessionStore reads them
# as this one's (the same users, the same rules), so nobody is logged out by the change.
DJANGO_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
MODEL_BACKEND = "server.app.authentication.backends.ModelBackend"


class ModelBackend(backends.ModelBackend):
    def get_user(self, user_id):
        model = get_user_model()
        try:
            pk = model._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        using = router.db_for_read(model)
        with connections[using].cursor() as cursor:
            cursor.execute(_select(using, model), [pk])
            row = cursor.fetchone()
        if row is None:
            return None
        user = model.from_db(using, [f.attname for f in model._meta.concrete_fields], row)
        return user if self.user_can_authenticate(user) else None


@functools.cache
def _select(using: str, model) -> str:
    qn = connections[using].ops.quote_name
    columns = ", ".join(qn(f.column) for f in model._meta.concrete_fields)
    return f"SELECT {columns} FROM {qn(model._meta.db_table)} WHERE {qn(model._meta.pk.column)} = %s"
