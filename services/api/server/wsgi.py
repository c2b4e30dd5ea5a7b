import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
application = get_wsgi_application()

# Load the URLconf (and with it both GraphQL schemas) now rather than in the first request, then
# move everything start-up made out of the collector's reach: a full collection of a worker's
# ~140,000 start-up objects took 63-79 ms here, and whichever request it landed in paid for it
# (the benchmark's slowest publishPost, 33-57 ms over its median, in every run).
get_resolver().url_patterns
gc.collect()
gc.freeze()
