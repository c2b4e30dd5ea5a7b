"""gunicorn settings for the WSGI role (queries and mutations over HTTP), read from the environment."""

import os
import shutil

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 75  # longer than nginx's upstream keepalive_timeout, so nginx closes first
max_requests = 5000
max_requests_jitter = 500
# nginx logs every request already (with its X-Request-ID); a second line per request from
# gunicorn is off unless asked for (GUNICORN_ACCESS_LOG=-).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "*")
proc_name = "postwire-api"


def on_starting(server):
    # prometheus_client's multiprocess mode: every worker writes here, /metrics sums them.
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
