from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from server.app.authentication.services import ensure_staff_publisher


class Command(BaseCommand):
    help = (
        "Create or update a staff user with the blog.publish_post permission, from "
        "POSTWIRE_BOOTSTRAP_USERNAME / _PASSWORD / _EMAIL (or the options). Does nothing when no "
        "username is configured."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default=settings.BOOTSTRAP_USERNAME)
        parser.add_argument("--password", default=settings.BOOTSTRAP_PASSWORD)
        parser.add_argument("--email", default=settings.BOOTSTRAP_EMAIL)

    def handle(self, *args, username, password, email, **options):
        if not username:
            self.stdout.write("No POSTWIRE_BOOTSTRAP_USERNAME set: no staff user bootstrapped.")
            return
        if not password:
            raise CommandError(f"POSTWIRE_BOOTSTRAP_PASSWORD is required to bootstrap {username!r}.")
        user, created = ensure_staff_publisher(username=username, password=password, email=email)
        self.stdout.write(f"{'Created' if created else 'Updated'} staff publisher {user.username!r}.")
