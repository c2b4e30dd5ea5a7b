import strawberry_django
from django.contrib.auth import get_user_model
from strawberry import auto


@strawberry_django.type(get_user_model())
class User:
    id: auto
    username: auto
    email: auto
    is_staff: auto
