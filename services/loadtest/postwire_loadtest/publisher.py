"""Publishing over HTTP as a staff user: log in (CSRF + session cookie), create the drafts up front,
then publish them OPEN-LOOP on a fixed schedule.

Drafts are created before the measured phase so that each measured publish is a single
publishPost request, and latency runs from just before that request. The measured request goes
out on a plain http.client keep-alive connection per thread, not through requests: requests
spent ~1.8 ms of its own on each POST here (a do-nothing gunicorn app: 2.8 ms through requests,
1.0 ms over a bare socket, 1 s apart), which the publish figure would have counted. Open loop: publish n is
sent at start + n/rate whether or not earlier publishes were answered or delivered, so a slow
server shows up as latency, not as a slower publish rate (a closed loop would hide it).
"""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import requests

from postwire_loadtest.documents import CREATE_POST, LOGIN, PUBLISH_POST

REQUEST_TIMEOUT = 30.0


class PublisherError(RuntimeError):
    pass


@dataclass
class PublishResult:
    n: int  # the tool's sequence number (0 for warm-up posts)
    title: str
    t_scheduled: float  # monotonic time it was due
    t_sent: float  # monotonic, just before the request
    t_answered: float
    ok: bool
    error: str | None = None
    api_node: str | None = None  # X-Postwire-Node of the gunicorn that served it
    published_at: str | None = None


class Publisher:
    def __init__(self, base_url: str, graphql_url: str, username: str, password: str, threads: int = 32):
        self.base_url = base_url
        self.graphql_url = graphql_url
        self.username = username
        self.password = password
        self._cookies: requests.cookies.RequestsCookieJar | None = None
        self._publish_headers: dict[str, str] = {}
        self._publish_url = urlsplit(graphql_url)
        self._local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="publish")

    # One requests.Session per thread (Session is not thread-safe), all sharing the login cookies.
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            if self._cookies is not None:
                session.cookies.update(self._cookies)
            self._local.session = session
        return session

    def _post(self, query: str, variables: dict) -> requests.Response:
        session = self._session()
        return session.post(
            self.graphql_url,
            json={"query": query, "variables": variables},
            headers={"X-CSRFToken": session.cookies.get("csrftoken", "")},
            timeout=REQUEST_TIMEOUT,
        )

    def login(self) -> dict:
        session = requests.Session()
        try:
            response = session.get(f"{self.base_url}/csrf/", timeout=REQUEST_TIMEOUT)
            response.raise_for_status()
            self._local.session = session
            result = self._post(LOGIN, {"u": self.username, "p": self.password}).json()
        except (requests.RequestException, ValueError) as exc:
            raise PublisherError(f"cannot log in at {self.graphql_url}: {exc}") from exc
        login = (result.get("data") or {}).get("login") or {}
        if login.get("__typename") != "User" or not login.get("isStaff"):
            raise PublisherError(f"login as {self.username!r} did not give a staff user: {result}")
        self._cookies = session.cookies
        self._publish_headers = {
            "Content-Type": "application/json",
            "Cookie": "; ".join(f"{name}={value}" for name, value in session.cookies.items()),
            "X-CSRFToken": session.cookies.get("csrftoken", ""),
            "User-Agent": "postwire-loadtest",
        }
        return login

    def _create(self, title: str) -> str:
        result = self._post(CREATE_POST, {"title": title}).json()
        payload = (result.get("data") or {}).get("createPost") or {}
        if payload.get("__typename") != "Post":
            raise PublisherError(f"createPost({title!r}) failed: {result}")
        return payload["id"]

    def create_drafts(self, titles: list[str]) -> list[str]:
        """Create drafts in parallel; returns their global ids in the order of titles."""
        try:
            return list(self.pool.map(self._create, titles))
        except requests.RequestException as exc:
            raise PublisherError(f"createPost failed: {exc}") from exc

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        """This thread's keep-alive connection for publishes."""
        connection = getattr(self._local, "connection", None)
        if connection is None or fresh:
            if connection is not None:
                connection.close()
            url = self._publish_url
            kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            connection = kind(url.netloc, timeout=REQUEST_TIMEOUT)
            self._local.connection = connection
        return connection

    def _post_publish(self, body: bytes) -> tuple[int, str | None, bytes]:
        path = self._publish_url.path or "/"
        for attempt in (1, 2):
            connection = self._connection(fresh=attempt == 2)
            try:
                connection.request("POST", path, body, self._publish_headers)
                response = connection.getresponse()
                return response.status, response.getheader("X-Postwire-Node"), response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection as we reused it: once more on a
                # new one (publishing twice notifies once, so a repeat is harmless).
                connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def publish(self, n: int, title: str, gid: str, t_scheduled: float) -> PublishResult:
        """One publishPost request. Runs in a pool thread; never raises."""
        body = orjson.dumps({"query": PUBLISH_POST, "variables": {"id": gid}})
        t_sent = time.monotonic()
        try:
            status, node, content = self._post_publish(body)
            t_answered = time.monotonic()
            if status != 200:
                return PublishResult(n, title, t_scheduled, t_sent, t_answered, False, f"publish_http_{status}", node)
            payload = (orjson.loads(content).get("data") or {}).get("publishPost") or {}
            if payload.get("__typename") != "Post" or not payload.get("published"):
                return PublishResult(n, title, t_scheduled, t_sent, t_answered, False, "publish_refused", node)
            return PublishResult(
                n, title, t_scheduled, t_sent, t_answered, True, None, node, payload.get("publishedAt")
            )
        except TimeoutError:
            return PublishResult(n, title, t_scheduled, t_sent, time.monotonic(), False, "publish_timeout")
        except (OSError, http.client.HTTPException, orjson.JSONDecodeError) as exc:
            self._connection(fresh=True)
            return PublishResult(
                n, title, t_scheduled, t_sent, time.monotonic(), False, f"publish_{type(exc).__name__}"
            )

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
