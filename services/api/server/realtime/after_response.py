"""Holding work committed during a WSGI request until its response has been written.

Why: a broadcast wakes every Daphne process, and on a machine whose cores they share, their
fan-out would otherwise run while the gunicorn thread is still building and writing the
publish's response, which then gets a fraction of a core (the benchmark halved the publish
request's p99 this way: docs/performance.md). Holding the send costs delivery only the time it
takes to finish and write that response.

When: Django fires `request_finished` from `HttpResponse.close()`, and gunicorn calls that after
the body is written: gthread's `handle_request` writes every chunk, then `resp.close()`, then
`respiter.close()` (Django's test Client closes the response too). Error responses are closed
the same way: Django turns a view's or middleware's exception into a response first.

Where: only in a WSGI request (the thread's context holds the request's list from the middleware
to `request_finished`). Anywhere else (management commands, the shell, the ASGI side, code that
calls services directly) `call` runs at once, as it always did.

What is held was committed already, so nothing is dropped: a list left over from a request whose
response was never closed is run when the thread's next request starts. A send that never
leaves (a worker killed mid-request) is caught up from PostgreSQL by the hubs, as any failed
send is (realtime/publish.py).
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable

from django.core.handlers.wsgi import WSGIRequest
from django.core.signals import request_finished
from django.dispatch import receiver

log = logging.getLogger(__name__)

# A contextvar, not a module-level list: gthread serves several requests at once, one per
# thread, and each thread's context is its own.
_held: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "after_response_held", default=None
)


def call(fn: Callable[..., None], *args) -> None:
    """Run `fn(*args)` once this thread's WSGI response has been written, or now outside one."""
    held = _held.get()
    if held is None:
        fn(*args)
    else:
        held.append(functools.partial(fn, *args))


def _run_held() -> None:
    held = _held.get()
    _held.set(None)
    for fn in held or ():
        try:
            fn()
        except Exception:  # the response is gone: log, and let the rest still run
            log.exception("after-response call %r failed", fn)


class AfterResponseMiddleware:
    """Outermost, so that anything committed anywhere in the request is held."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if isinstance(request, WSGIRequest):
            _run_held()  # left by a request on this thread whose response was never closed
            _held.set([])
        return self.get_response(request)


@receiver(request_finished, dispatch_uid="server.realtime.after_response")
def _response_closed(sender, **kwargs) -> None:
    _run_held()
