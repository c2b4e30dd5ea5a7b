from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "server.app.blog"
    label = "blog"  # primary keys: settings.DEFAULT_AUTO_FIELD
