"""Hostile or buggy clients, through nginx: every malformed WebSocket message closes its socket
with the protocol's code *and a reason*, promptly; every malformed HTTP request gets a 4xx or a
GraphQL error that says what is wrong; and every node goes on serving everyone else, with its
memory where it was."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
import websockets

from tests.stack.fanout import close_all, open_subscribers, publish_and_expect, until_live
from tests.support.client import GraphQLHttp

pytestmark = pytest.mark.stack

T, L = "graphql-transport-ws", "graphql-ws"
INIT = json.dumps({"type": "connection_init", "payload": {}})
SUB = "subscription { postNotify { seq } }"


def start(protocol: str, op_id, payload) -> str:
    return json.dumps({"type": "subscribe" if protocol == T else "start", "id": op_id, "payload": payload})


# (name, protocol, messages sent after opening (None: no connection_init), expected code, reason part)
CASES = [
    ("list", T, [INIT, "[]"], 4400, "a message must be a JSON object, not list"),
    ("number", T, [INIT, "42"], 4400, "not int"),
    ("string", T, [INIT, '"hello"'], 4400, "not str"),
    ("null", T, [INIT, "null"], 4400, "not NoneType"),
    ("no type", T, [INIT, "{}"], 4400, "needs a 'type' string"),
    ("numeric type", T, [INIT, '{"type": 5}'], 4400, "needs a 'type' string"),
    ("unknown type", T, [INIT, '{"type": "launch"}'], 4400, "unknown message type 'launch'"),
    (
        "legacy type on the modern protocol",
        T,
        [INIT, start(L, "1", {"query": SUB}).replace("subscribe", "start")],
        4400,
        "unknown message type 'start'",
    ),
    (
        "init payload a string",
        T,
        ['{"type": "connection_init", "payload": "x"}'],
        4400,
        "'connection_init' payload must be an object or null",
    ),
    ("ping payload a list", T, [INIT, '{"type": "ping", "payload": []}'], 4400, "'ping' payload"),
    ("numeric id", T, [INIT, start(T, 1, {"query": SUB})], 4400, "'id' must be a non-empty string"),
    ("empty id", T, [INIT, start(T, "", {"query": SUB})], 4400, "'id' must be a non-empty string"),
    ("huge id", T, [INIT, start(T, "x" * 500, {"query": SUB})], 4400, "'id' is longer than 128"),
    ("payload a string", T, [INIT, start(T, "1", "subscription {}")], 4400, "'payload' must be an object"),
    ("query a number", T, [INIT, start(T, "1", {"query": 5})], 4400, "'payload.query' must be a string"),
    (
        "variables a list",
        T,
        [INIT, start(T, "1", {"query": SUB, "variables": []})],
        4400,
        "'payload.variables' must be an object or null",
    ),
    (
        "operationName a number",
        T,
        [INIT, start(T, "1", {"query": SUB, "operationName": 1})],
        4400,
        "'payload.operationName' must be a string or null",
    ),
    ("complete without id", T, [INIT, '{"type": "complete"}'], 4400, "'id' must be a non-empty string"),
    ("invalid JSON", T, [INIT, "{nope"], 4400, "WebSocket message must be valid JSON"),
    ("deeply nested JSON", T, [INIT, "[" * 100_000 + "]" * 100_000], 4400, "WebSocket message must be valid JSON"),
    ("binary frame", T, [INIT, b"\x00\x01"], 4400, "WebSocket message type must be text"),
    ("subscribe before init", T, [start(T, "1", {"query": SUB})], 4401, "Unauthorized"),
    ("init twice", T, [INIT, INIT], 4429, "Too many initialisation requests"),
    (
        "same id twice",
        T,
        [INIT, start(T, "1", {"query": SUB}), start(T, "1", {"query": SUB})],
        4409,
        "Subscriber for 1 already exists",
    ),
    ("syntax error", T, [INIT, start(T, "1", {"query": "subscription {"})], 4400, "Syntax Error"),
    ("no connection_init", T, [], 4408, "Connection initialisation timeout"),
    ("legacy: list", L, [INIT, "[]"], 4400, "a message must be a JSON object, not list"),
    ("legacy: number", L, [INIT, "7"], 4400, "not int"),
    ("legacy: unknown type", L, [INIT, '{"type": "subscribe"}'], 4400, "unknown message type 'subscribe'"),
    ("legacy: numeric id", L, [INIT, start(L, 2, {"query": SUB})], 4400, "'id' must be a non-empty string"),
    ("legacy: payload a list", L, [INIT, start(L, "1", [])], 4400, "'payload' must be an object"),
    ("legacy: query missing", L, [INIT, start(L, "1", {})], 4400, "'payload.query' must be a string"),
    ("legacy: stop without id", L, [INIT, '{"type": "stop"}'], 4400, "'id' must be a non-empty string"),
    ("legacy: invalid JSON", L, [INIT, "{nope"], 4400, "WebSocket message must be valid JSON"),
    ("legacy: binary frame", L, [INIT, b"\xff"], 4400, "WebSocket message type must be text"),
    ("legacy: start before init", L, [start(L, "1", {"query": SUB})], 4401, "Unauthorized"),
    ("legacy: no connection_init", L, [], 4408, "Connection initialisation timeout"),
    ("flood", T, [INIT] + ['{"type": "ping"}'] * 600, 1008, "Too many messages waiting"),
    ("legacy: flood", L, [INIT] + ['{"type": "connection_init"}'] * 600, 1008, "Too many messages waiting"),
    (
        "over the token limit",
        T,
        [INIT, start(T, "1", {"query": "subscription { postNotify { " + "seq " * 2500 + "} }"})],
        4400,
        "Syntax Error: Document contains more than 2000 tokens. Parsing aborted.",
    ),
    ("over-size message", T, [INIT, json.dumps({"type": "ping", "payload": {"x": "y" * 300_000}})], 1009, ""),
]


async def closed_with(url: str, protocol: str, sends: list, timeout: float = 10.0) -> tuple[int, str, float]:
    loop = asyncio.get_running_loop()
    async with websockets.connect(url, subprotocols=[protocol], compression=None, max_size=None) as ws:
        started = loop.time()
        try:
            for message in sends:  # the server may close while these are still going out
                await ws.send(message)
            async with asyncio.timeout(timeout):
                while True:
                    await ws.recv()  # acks and results until the server closes
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is None:
                pytest.fail(f"the server dropped the connection without a close frame ({closed})")
            return closed.rcvd.code, closed.rcvd.reason, loop.time() - started
    pytest.fail(f"still open after {timeout}s")


@pytest.mark.parametrize(("name", "protocol", "sends", "code", "reason"), CASES, ids=[c[0] for c in CASES])
async def test_bad_input_closes_with_code_and_reason(stack, name, protocol, sends, code, reason):
    got_code, got_reason, seconds = await closed_with(stack.ws_url, protocol, sends)
    assert (got_code, reason in got_reason) == (code, True), (got_code, got_reason)
    if code != 4408:
        assert seconds < 3, f"took {seconds:.1f}s to close"


ALIASES = " ".join(f"a{i}: seq" for i in range(16))
# (name, raw body, content type, expected status, part of the body expected)
HTTP_CASES = [
    ("invalid JSON", "{nope", "application/json", 400, "Unable to parse request body as JSON"),
    (
        "deeply nested JSON",
        "[" * 100_000 + "]" * 100_000,
        "application/json",
        400,
        "Unable to parse request body as JSON",
    ),
    ("a batch", "[]", "application/json", 400, "Batching is not enabled"),
    ("query a number", '{"query": 5}', "application/json", 400, "`query` must be a string or null"),
    (
        "variables a list",
        '{"query": "{ serverNode }", "variables": []}',
        "application/json",
        400,
        "`variables` must be an object or null",
    ),
    ("no query", "{}", "application/json", 400, "No GraphQL query found in the request"),
    ("unsupported content type", "query=x", "text/plain", 400, "Unsupported content type"),
    (
        "NUL byte",
        json.dumps({"query": "{ serverNode }\u0000"}),
        "application/json",
        200,
        "Syntax Error: Unexpected character: U+0000.",
    ),
    (
        "lone surrogate",
        '{"query": "{ serverNode \\ud800 }"}',
        "application/json",
        200,
        "Syntax Error: Invalid character: U+D800.",
    ),
    (
        "too many aliases",
        json.dumps({"query": "{ me { " + ALIASES.replace("seq", "username") + " } }"}),
        "application/json",
        200,
        "16 aliases found. Allowed: 15",
    ),
    (
        "too many root fields",
        json.dumps({"query": "{ " + "serverNode " * 11 + "}"}),
        "application/json",
        200,
        "11 root fields requested. Allowed: 10",
    ),
    (
        "over the token limit",
        json.dumps({"query": "{ " + "serverNode " * 2500 + "}"}),
        "application/json",
        200,
        "Document contains more than 2000 tokens",
    ),
    (
        "cyclic introspection",
        json.dumps({"query": "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }"}),
        "application/json",
        200,
        "Maximum introspection depth exceeded",
    ),
    (
        "a subscription over HTTP",
        json.dumps({"query": "subscription { postNotify { seq } }"}),
        "application/json",
        200,
        "Subscriptions are served over WebSocket",
    ),
    (
        "over-size body",
        json.dumps({"query": "{ serverNode }", "x": "y" * 2_000_000}),
        "application/json",
        413,
        "Request Entity Too Large",
    ),
]


@pytest.mark.parametrize(("name", "body", "content_type", "status", "text"), HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_bad_http_input_is_answered_with_what_is_wrong(stack, name, body, content_type, status, text):
    client = GraphQLHttp(stack.http_url)
    response = client.session.post(
        f"{stack.http_url}/graphql",
        data=body.encode(),
        headers={"Content-Type": content_type, "X-CSRFToken": client.csrf_token()},
        timeout=30,
    )
    assert (response.status_code, text in response.text) == (status, True), (response.status_code, response.text[:300])


async def test_a_subscription_over_a_limit_gets_an_error_and_the_socket_stays_usable(stack):
    async with websockets.connect(stack.ws_url, subprotocols=[T], compression=None) as ws:
        await ws.send(INIT)
        await ws.recv()
        await ws.send(start(T, "1", {"query": "subscription { postNotify { " + ALIASES + " } }"}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert error == {"type": "error", "id": "1", "payload": [{"message": "16 aliases found. Allowed: 15"}]}
        await ws.send(start(T, "2", {"query": "subscription { serverNode }"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["payload"]["data"]["serverNode"].startswith("ws-")


def resident_bytes(stack) -> dict[str, float]:
    out = {}
    for name in ("ws-1", "ws-2", "ws-3"):
        text = urllib.request.urlopen(f"{stack.node(name).base_url}/metrics", timeout=5).read().decode()
        out[name] = next(
            float(line.split()[-1]) for line in text.splitlines() if line.startswith("process_resident_memory_bytes ")
        )
    return out


@pytest.fixture(scope="module", autouse=True)
def memory_before(stack):
    return resident_bytes(stack)


async def test_after_the_battery_every_node_still_serves_with_bounded_memory(stack, staff, memory_before):
    # Each flood above sent 600 messages at once (Daphne reads them in one go) and the over-size
    # ones 300 KB: had any of it been buffered for good, a node would hold it still. (Daphne's
    # allocator keeps some freed memory.)
    grown = {name: (now - memory_before[name]) / 2**20 for name, now in resident_bytes(stack).items()}
    assert max(grown.values()) < 30, f"MiB grown per node: {grown}"
    subscribers = await open_subscribers(stack.ws_url, 9)
    try:
        assert {s.node for s in subscribers} == {"ws-1", "ws-2", "ws-3"}
        await until_live(subscribers, staff)
        await publish_and_expect(subscribers, staff, title="after the bad input battery")
    finally:
        await close_all(subscribers)
