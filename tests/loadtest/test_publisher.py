"""The publisher's measured request, against a small HTTP server that behaves like gunicorn behind
nginx in the ways that matter to it: cookies and CSRF from the login, keep-alive connections the
server may close between publishes. (The loadtest tier's runs publish through the real stack.)"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from postwire_loadtest.publisher import Publisher

pytestmark = pytest.mark.loadtest


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn and nginx speak
    seen: list[dict] = []
    close_after_publish = False

    def log_message(self, *args):
        pass

    def _reply(self, body: dict, cookies: tuple[str, ...] = ()) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Postwire-Node", "api-test")
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._reply({"csrfToken": "t0k"}, ("csrftoken=t0k; Path=/",))

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "login" in request["query"]:
            self._reply({"data": {"login": {"__typename": "User", "isStaff": True}}}, ("sessionid=s3ss; Path=/",))
            return
        self.seen.append({"headers": dict(self.headers), "variables": request["variables"]})
        self._reply({"data": {"publishPost": {"__typename": "Post", "published": True, "publishedAt": "now"}}})
        if self.close_after_publish:
            # As a server whose keep-alive timeout ends while the client holds the connection idle:
            # closed without a "Connection: close", so the client learns it on its next request.
            self.close_connection = True


@pytest.fixture
def server():
    Handler.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def publisher_for(server) -> Publisher:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    publisher = Publisher(base, f"{base}/graphql", "staff", "pw", threads=1)
    publisher.login()
    return publisher


def test_a_publish_carries_the_logins_cookies_and_csrf_token(server):
    publisher = publisher_for(server)
    result = publisher.publish(1, "t1", "UG9zdDox", 0.0)
    assert (result.ok, result.error, result.api_node, result.published_at) == (True, None, "api-test", "now")
    headers = Handler.seen[0]["headers"]
    assert sorted(headers["Cookie"].split("; ")) == ["csrftoken=t0k", "sessionid=s3ss"]
    assert headers["X-CSRFToken"] == "t0k" and headers["Content-Type"] == "application/json"
    assert Handler.seen[0]["variables"] == {"id": "UG9zdDox"}
    publisher.close()


def test_publishes_reuse_one_connection_and_survive_the_server_closing_it(server, monkeypatch):
    publisher = publisher_for(server)
    assert publisher.publish(1, "t1", "a", 0.0).ok
    first = publisher._connection()
    assert publisher.publish(2, "t2", "b", 0.0).ok
    assert publisher._connection() is first  # kept alive between publishes

    monkeypatch.setattr(Handler, "close_after_publish", True)
    results = [publisher.publish(n, f"t{n}", f"g{n}", 0.0) for n in range(3, 6)]
    assert [(r.ok, r.error) for r in results] == [(True, None)] * 3
    assert [s["variables"]["id"] for s in Handler.seen] == ["a", "b", "g3", "g4", "g5"]  # each sent once
    publisher.close()


def test_a_server_that_is_gone_is_a_counted_error_not_an_exception(server):
    publisher = publisher_for(server)
    server.shutdown()
    server.server_close()
    result = publisher.publish(1, "t1", "a", 0.0)
    assert not result.ok and result.error.startswith("publish_"), result
    publisher.close()
