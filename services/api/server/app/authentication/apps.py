from django.apps import AppConfig


class AuthenticationConfig(AppConfig):
    name = "server.app.authentication"
    label = "authentication"

    def ready(self):
        from server.app.authentication import throttle  # noqa: F401 - connects its signal receivers
