"""Liveness of a Daphne node, answered on its event loop (no thread hop, no Django)."""

from server.realtime import drain

_HEADERS = [(b"content-type", b"text/plain"), (b"cache-control", b"no-store")]


class LoopHealthz:
    """`GET /healthz` → 200 "ok" while the loop runs ("draining" during a drain); everything else
    goes to the inner (Django) application."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] == "http"
            and scope["path"] in ("/healthz", "/healthz/")
            and scope["method"] in ("GET", "HEAD")
        ):
            body = b"draining\n" if drain.draining else b"ok\n"
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
            return
        return await self.inner(scope, receive, send)
