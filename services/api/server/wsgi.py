import gc
import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
application = get_wsgi_application()

# Load the URLconf (and with it both GraphQL schemas) now rather than in the first request, then
# move everything start-up made out of the collector's reach: a full collection of a worker's
# start-up objects is a pause paid by whichever request it lands in (docs/performance.md).
import_module(settings.ROOT_URLCONF)
gc.collect()
gc.freeze()
