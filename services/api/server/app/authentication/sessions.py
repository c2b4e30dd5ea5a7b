"""SESSION_ENGINE: Django's database sessions. A session that names Django's ModelBackend is read
as naming postwire's (backends.py), which replaced it: logins from before stay logged in."""

from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.sessions.backends import db

from server.app.authentication.backends import DJANGO_MODEL_BACKEND, MODEL_BACKEND


class SessionStore(db.SessionStore):
    def load(self):
        data = super().load()
        if data.get(BACKEND_SESSION_KEY) == DJANGO_MODEL_BACKEND:  # logged in before backends.py
            data[BACKEND_SESSION_KEY] = MODEL_BACKEND
        return data
