"""Log records carry the node and the request id; LOG_FORMAT=json writes one object per line."""

import json
import logging

from django.http import HttpResponse
from django.test import RequestFactory

from server import logs
from tests.api.test_settings import PRODUCTION, run_python


def test_json_format_is_one_object_per_line_with_node_and_request_id():
    code = (
        "import django, logging; django.setup(); from server import logs; "
        "logs.request_id.set('rid-1'); logging.getLogger('postwire.test').warning('hello %s', 'there')"
    )
    result = run_python(code, **PRODUCTION, LOG_FORMAT="json", POSTWIRE_NODE_NAME="api-7")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stderr.strip().splitlines()[-1])
    assert record | {"time": None} == {
        "time": None,
        "level": "WARNING",
        "node": "api-7",
        "request_id": "rid-1",
        "operation_id": "-",
        "logger": "postwire.test",
        "message": "hello there",
    }


def test_production_logs_json_and_development_plain_by_default():
    code = "import django; django.setup(); from django.conf import settings; print(settings.LOG_FORMAT)"
    assert run_python(code, **PRODUCTION).stdout.strip() == "json"
    assert run_python(code, POSTWIRE_ENV="development").stdout.strip() == "plain"
    assert "LOG_FORMAT" in run_python(code, **PRODUCTION, LOG_FORMAT="xml").stderr


def test_the_request_id_is_set_while_serving_and_reset_after():
    seen = []

    def view(request):
        seen.append(logs.request_id.get())
        return HttpResponse("ok")

    logs.RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="abc123"))
    assert seen == ["abc123"] and logs.request_id.get() == "-"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    assert logs.ContextFilter().filter(record) and record.request_id == "-" and record.node


async def test_a_websocket_keeps_its_upgrade_requests_id():
    seen = []

    async def app(scope, receive, send):
        seen.append(logs.request_id.get())

    await logs.RequestIdASGIMiddleware(app)(
        {"type": "websocket", "headers": [(b"x-request-id", b"ws-rid")]}, None, None
    )
    assert seen == ["ws-rid"] and logs.request_id.get() == "-"


async def test_what_an_operations_task_logs_carries_its_operation_id():
    """strawberry starts each operation's task inside the handler's start call; the task copies the
    context there, so its records name the operation (and the socket's request id) to the end."""
    import asyncio
    from types import SimpleNamespace

    from server.realtime.protocols import TransportWSHandler

    records, tasks = [], []
    handler = logging.getLogger("postwire.test.operation")
    capture = logging.Handler()
    capture.emit = records.append
    capture.addFilter(logs.ContextFilter())
    handler.addHandler(capture)

    async def operation():
        await asyncio.sleep(0)  # logs after the start call has returned
        handler.warning("inside the operation")

    async def start(message):
        tasks.append(asyncio.create_task(operation()))

    logs.request_id.set("ws-rid")
    message = {"id": "op-7", "type": "subscribe", "payload": {"query": "subscription { postNotify { id } }"}}
    try:
        protocol_handler = TransportWSHandler.__new__(TransportWSHandler)
        protocol_handler.view = SimpleNamespace(connection=None)
        await protocol_handler.start_operation(start, message)
        assert logs.operation_id.get() == "-"  # only the operation's task carries it
        await tasks[0]
    finally:
        handler.removeHandler(capture)
    assert [(r.request_id, r.operation_id) for r in records] == [("ws-rid", "op-7")]
