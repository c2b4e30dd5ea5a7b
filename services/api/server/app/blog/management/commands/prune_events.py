import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from server.app.blog.services import prune_events


class Command(BaseCommand):
    help = (
        "Delete post events older than POSTWIRE_EVENT_RETENTION_DAYS (or --days), in batches, always "
        "keeping the newest. A subscriber resuming with `after` from before the oldest kept event is "
        "told to refetch. Run it daily (the Kubernetes CronJob prune-events does)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            default=settings.EVENT_RETENTION_DAYS,
            help="keep this many days of events (default: POSTWIRE_EVENT_RETENTION_DAYS)",
        )
        parser.add_argument("--batch-size", type=int, default=10_000, help="rows per DELETE statement")

    def handle(self, *args, days, batch_size, **options):
        if days < 1 or batch_size < 1:
            raise CommandError("--days and --batch-size must be at least 1.")
        deleted, oldest = prune_events(older_than=timezone.now() - datetime.timedelta(days=days), batch_size=batch_size)
        kept = f"oldest kept: seq {oldest}" if oldest is not None else "none stored"
        self.stdout.write(f"Deleted {deleted} post events older than {days} days ({kept}).")
