from django.apps import AppConfig


class AuthenticationConfig(AppConfig):
    name = "server.app.authentication"
    label = "authentication"
