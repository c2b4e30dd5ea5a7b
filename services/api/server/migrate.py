"""`postwire migrate`: apply migrations, then bootstrap the staff user, one process at a time.

Any number of these may start together (every api pod's init container in a rollout, compose's
one-shot service, a re-run): a PostgreSQL advisory lock makes them take turns, so migrations are
applied once and the others find nothing left to do. Kubernetes runs it as the api pods' init
container rather than as a Job, whose immutable pod template (it names the hashed ConfigMap and
Secret and the image) made every re-apply after a change fail.
"""

import os
import sys

# Any constant both sides agree on; "postwire" in ASCII.
LOCK_KEY = 0x706F737477697265


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        print("waiting for the migration lock", flush=True)
        cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            call_command("migrate", interactive=False)
            call_command("ensure_staff_user")
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


if __name__ == "__main__":
    sys.exit(main())
