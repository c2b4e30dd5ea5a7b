"""nginx's per-client limits (nginx/render-config.sh), rendered and run for real.

The stack's own nginx runs with the per-address limits off (devstack: every load-test client is
on loopback), so the limits are proven with a second nginx, rendered by the same script with
them on and small, in front of the running stack's gunicorn and Daphne nodes.
"""

import asyncio
import http.server
import json
import socket
import threading
import time

import pytest
import requests
import websockets

from tests.support.client import Socket
from tests.support.nginx import nginx_test, render, running_nginx

pytestmark = pytest.mark.stack

WS_CONNS = 3
SLOW_SECONDS = 2


# --- the rendered configuration, checked by `nginx -t` ------------------------------------------


def test_defaults_render_every_limit_and_nginx_accepts_them(tmp_path):
    conf = render(tmp_path)
    assert nginx_test(tmp_path, conf).returncode == 0, nginx_test(tmp_path, conf).stderr
    for directive in (
        "limit_conn ws_conns 1000;",
        "limit_req zone=graphql burst=40 nodelay;",
        "rate=20r/s;",
        "rate=10r/m;",
        "limit_req zone=login burst=5 nodelay;",
        "client_header_timeout 10s;",
        "client_body_timeout 10s;",
        "send_timeout 60s;",
        "limit_req_status 429;",
        "limit_conn_status 429;",
    ):
        assert directive in conf
    # Both WebSocket entrances are counted per address; the login limit sits on the admin form.
    assert conf.count("limit_conn ws_conns 1000;") == 2
    assert "location = /admin/login/ {\n            limit_req zone=login" in conf
    assert "set_real_ip_from" not in conf


def test_each_limit_can_be_turned_off(tmp_path):
    conf = render(
        tmp_path, POSTWIRE_NGINX_WS_CONNS_PER_IP="0", POSTWIRE_NGINX_GRAPHQL_RATE="0", POSTWIRE_NGINX_LOGIN_RATE="off"
    )
    result = nginx_test(tmp_path, conf)
    assert result.returncode == 0, result.stderr
    for directive in ("limit_conn ", "limit_req ", "limit_conn_zone", "limit_req_zone"):
        assert directive not in conf


def test_settings_and_real_ip_behind_a_proxy_render_and_pass_nginx(tmp_path):
    conf = render(
        tmp_path,
        POSTWIRE_NGINX_WS_CONNS_PER_IP="50",
        POSTWIRE_NGINX_GRAPHQL_RATE="300r/m",
        POSTWIRE_NGINX_GRAPHQL_BURST="7",
        POSTWIRE_NGINX_LOGIN_RATE="1r/s",
        POSTWIRE_NGINX_REAL_IP_FROM="10.0.0.0/8  192.168.1.0/24 fd00::/8",
        POSTWIRE_NGINX_CLIENT_HEADER_TIMEOUT="5s",
        POSTWIRE_NGINX_CLIENT_BODY_TIMEOUT="7s",
        POSTWIRE_NGINX_SEND_TIMEOUT="30s",
    )
    # `nginx -t` passing also proves this nginx has the realip module (set_real_ip_from).
    result = nginx_test(tmp_path, conf)
    assert result.returncode == 0, result.stderr
    for directive in (
        "limit_conn ws_conns 50;",
        "rate=300r/m;",
        "burst=7 nodelay;",
        "rate=1r/s;",
        "set_real_ip_from 10.0.0.0/8;",
        "set_real_ip_from 192.168.1.0/24;",
        "set_real_ip_from fd00::/8;",
        "real_ip_header X-Forwarded-For;",
        "real_ip_recursive on;",
        "client_header_timeout 5s;",
        "client_body_timeout 7s;",
        "send_timeout 30s;",
    ):
        assert directive in conf


def test_a_wrong_value_is_caught_by_nginx_at_start(tmp_path):
    # The image's entrypoint runs `nginx -t` before starting, so a typo stops it with the reason.
    result = nginx_test(tmp_path, render(tmp_path, POSTWIRE_NGINX_GRAPHQL_RATE="lots"))
    assert result.returncode != 0 and "rate" in result.stderr


# --- the limits at work, in front of the running stack -------------------------------------------


@pytest.fixture(scope="module")
def edge(stack):
    """A second nginx with the limits on (small), proxying to the stack's nodes; its host:port."""
    with running_nginx(
        "nginx-limits",
        stack.run_dir,
        POSTWIRE_API_SERVERS=" ".join(f"127.0.0.1:{n.port}" for n in stack.api),
        POSTWIRE_WS_SERVERS=" ".join(f"127.0.0.1:{n.port}" for n in stack.ws),
        POSTWIRE_NGINX_WS_CONNS_PER_IP=str(WS_CONNS),
        POSTWIRE_NGINX_GRAPHQL_RATE="1r/s",
        POSTWIRE_NGINX_GRAPHQL_BURST="2",
        # The test client is a "proxy" whose X-Forwarded-For is believed: one machine, many clients.
        POSTWIRE_NGINX_REAL_IP_FROM="127.0.0.1/32",
        POSTWIRE_NGINX_CLIENT_HEADER_TIMEOUT=f"{SLOW_SECONDS}s",
        POSTWIRE_NGINX_CLIENT_BODY_TIMEOUT=f"{SLOW_SECONDS}s",
    ) as address:
        yield address


async def open_socket(edge: str, path: str = "/wsgraphql", client: str | None = None) -> Socket:
    """Socket.open, as a client behind the trusted proxy when `client` is given."""
    headers = {"X-Forwarded-For": client} if client else {}
    ws = await websockets.connect(
        f"ws://{edge}{path}", subprotocols=["graphql-transport-ws"], additional_headers=headers, open_timeout=10
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "connection_ack":
        pass
    return Socket(ws, "graphql-transport-ws")


async def test_sockets_over_the_per_address_limit_get_429(edge):
    sockets = [await open_socket(edge) for _ in range(WS_CONNS)]
    try:
        for s in sockets:  # each of the first N works
            assert (await s.node()).startswith("ws-")
        for path in ("/wsgraphql", "/graphql"):  # both WebSocket entrances count
            with pytest.raises(websockets.InvalidStatus) as refused:
                await open_socket(edge, path)
            assert refused.value.response.status_code == 429
            assert b"too many open WebSockets from your address" in refused.value.response.body
        # HTTP is not a WebSocket: not counted.
        assert requests.get(f"http://{edge}/healthz", timeout=10).status_code == 200
        # Another client behind the trusted proxy has its own allowance.
        other = await open_socket(edge, client="203.0.113.9")
        assert (await other.node()).startswith("ws-")
        await other.close()
        # A closed socket frees its place (nginx counts it down when the connection ends).
        await sockets.pop().close()
        deadline = time.monotonic() + 20
        while True:
            try:
                sockets.append(await open_socket(edge))
                break
            except websockets.InvalidStatus:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert (await sockets[-1].node()).startswith("ws-")
    finally:
        for s in sockets:
            await s.close()


def test_graphql_requests_over_rate_and_burst_get_429_then_pass_again(edge):
    url = f"http://{edge}/graphql"
    client = {"X-Forwarded-For": "203.0.113.20"}  # an address of its own: no other test's tokens
    # 1 r/s with a burst of 2: twenty back-to-back requests cannot all fit.
    answers = [requests.get(url, params={"query": "{ serverNode }"}, headers=client, timeout=10) for _ in range(20)]
    assert answers[0].status_code == 200 and answers[0].json()["data"]["serverNode"].startswith("api-")
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    assert {a.status_code for a in answers} == {200, 429}
    assert "too many requests from your address" in refused[0].text
    assert refused[0].headers["Retry-After"] == "1"
    time.sleep(3)  # the bucket drains at 1 r/s
    again = requests.get(url, params={"query": "{ serverNode }"}, headers=client, timeout=10)
    assert again.status_code == 200, again.text


def _cut_after(edge: str, first_bytes: bytes) -> tuple[float, bytes]:
    """Send `first_bytes` and then nothing: how long until nginx closes, and what it said."""
    host, port = edge.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(first_bytes)
        started = time.monotonic()
        conn.settimeout(SLOW_SECONDS * 10)  # generous: the machine is shared with other tests
        received = b""
        while chunk := conn.recv(4096):
            received += chunk
        return time.monotonic() - started, received


def test_a_client_stalling_in_its_request_body_is_cut(edge):
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'X-Forwarded-For: 203.0.113.30\r\nContent-Length: 100\r\n\r\n{"query":'
    )
    waited, answer = _cut_after(edge, head)
    # Closed by client_body_timeout (not at once, and not by anything slower); nothing was proxied.
    assert waited >= SLOW_SECONDS * 0.75
    assert b"200 OK" not in answer


def test_a_client_stalling_in_its_headers_is_cut(edge):
    waited, answer = _cut_after(edge, b"GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow")
    assert waited >= SLOW_SECONDS * 0.75
    assert b"200 OK" not in answer


# --- X-Forwarded-Proto behind a TLS edge ---------------------------------------------------------


class _EchoHeaders(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps(dict(self.headers)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "trusted, sent, passed_on",
    [
        ("127.0.0.1/32", "https", "https"),  # a TLS edge in front: Django must see https (wss for Daphne)
        ("127.0.0.1/32", None, "http"),
        ("10.9.9.9/32", "https", "http"),  # not from a trusted proxy: a client cannot claim https
        ("", "https", "http"),  # no proxies configured: nginx is the edge
    ],
)
def test_x_forwarded_proto_is_the_edges_when_trusted_and_ours_otherwise(tmp_path, trusted, sent, passed_on):
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    backend = f"127.0.0.1:{upstream.server_address[1]}"
    try:
        with running_nginx(
            "nginx-proto",
            tmp_path,
            POSTWIRE_API_SERVERS=backend,
            POSTWIRE_WS_SERVERS=backend,
            POSTWIRE_NGINX_REAL_IP_FROM=trusted,
        ) as address:
            headers = {"X-Forwarded-Proto": sent} if sent else {}
            echoed = requests.get(f"http://{address}/graphql", headers=headers, timeout=10).json()
            assert echoed["X-Forwarded-Proto"] == passed_on
    finally:
        upstream.shutdown()
