from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from server.app.authentication.services import ensure_staff_publisher


class Command(BaseCommand):
    help = (
        "Create or update a staff user with the blog.publish_post permission, from "
        "POSTWIRE_BOOTSTRAP_USERNAME / _PASSWORD / _EMAIL (or the options). The password is set "
        "when the user is created; an existing user's only with POSTWIRE_BOOTSTRAP_RESET_PASSWORD=true "
        "(or --reset-password). Does nothing when no username is configured."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default=settings.BOOTSTRAP_USERNAME)
        parser.add_argument("--password", default=settings.BOOTSTRAP_PASSWORD)
        parser.add_argument("--email", default=settings.BOOTSTRAP_EMAIL)
        parser.add_argument("--reset-password", action="store_true", default=settings.BOOTSTRAP_RESET_PASSWORD)

    def handle(self, *args, username, password, email, reset_password, **options):
        if not username:
            self.stdout.write("No POSTWIRE_BOOTSTRAP_USERNAME set: no staff user bootstrapped.")
            return
        if not password:
            raise CommandError(f"POSTWIRE_BOOTSTRAP_PASSWORD is required to bootstrap {username!r}.")
        user, created = ensure_staff_publisher(
            username=username, password=password, email=email, reset_password=reset_password
        )
        if created:
            self.stdout.write(f"Created staff publisher {user.username!r}.")
        else:
            kept = "password reset" if reset_password else "password left unchanged"
            self.stdout.write(f"Updated staff publisher {user.username!r} ({kept}).")
