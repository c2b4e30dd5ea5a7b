"""Small GraphQL clients for the tests: HTTP (session login + CSRF) and WebSocket (both protocols).

They speak the wire protocols directly so tests can assert on exact messages; the third-party
clients (graphql-ws on Node, gql) are exercised separately in tests/stack/test_clients.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import requests
import websockets

# The documents the load tester sends are the ones the tests send: imported from its package
# (services/loadtest/postwire_loadtest/documents.py; tests/support/__init__.py puts it on sys.path).
from postwire_loadtest.documents import CREATE_POST, LOGIN, POST_NOTIFY, PUBLISH_POST, SERVER_NODE

# Documents only the tests send.
POST_NOTIFY_AFTER = "subscription($after: Seq) { postNotify(after: $after) { id title publishAt seq } }"
DRAFT_ACTIVITY = "subscription { draftActivity { seq kind postId title } }"

__all__ = [
    "CREATE_POST",
    "DRAFT_ACTIVITY",
    "LOGIN",
    "POST_NOTIFY",
    "POST_NOTIFY_AFTER",
    "PUBLISH_POST",
    "SERVER_NODE",
    "GraphQLHttp",
    "RawSocket",
    "Socket",
]


class GraphQLHttp:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.last_response: requests.Response | None = None

    def csrf_token(self) -> str:
        if "csrftoken" not in self.session.cookies:
            self.session.get(f"{self.base_url}/csrf/", timeout=10).raise_for_status()
        return self.session.cookies["csrftoken"]

    def execute(self, query: str, variables: dict | None = None, *, csrf: bool = True) -> dict:
        headers = {"X-CSRFToken": self.csrf_token()} if csrf else {}
        self.last_response = self.session.post(
            f"{self.base_url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=30,
        )
        return self.last_response.json()

    @property
    def served_by(self) -> str:
        return self.last_response.headers.get("X-Postwire-Node", "")

    def login(self, username: str, password: str) -> dict:
        result = self.execute(LOGIN, {"u": username, "p": password})
        assert (result.get("data") or {}).get("login", {}).get("__typename") == "User", result
        return result["data"]["login"]

    def create_post(self, title: str | None = None) -> tuple[str, str]:
        title = title or f"post {uuid.uuid4().hex[:8]}"
        result = self.execute(CREATE_POST, {"title": title})
        payload = result["data"]["createPost"]
        assert payload["__typename"] == "Post", result
        return payload["id"], title

    def publish(self, gid: str) -> dict:
        return self.execute(PUBLISH_POST, {"id": gid})

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)


class Socket:
    """One GraphQL WebSocket connection, graphql-transport-ws or legacy graphql-ws."""

    def __init__(self, ws, protocol: str):
        self.ws = ws
        self.protocol = protocol
        self._ids = 0
        self._pending: dict[str, asyncio.Queue] = {}
        self._reader = asyncio.create_task(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def open(
        cls, url: str, *, protocol: str = "graphql-transport-ws", cookie: str | None = None, origin: str | None = None
    ) -> Socket:
        headers = {"Cookie": cookie} if cookie else {}
        ws = await websockets.connect(
            url, subprotocols=[protocol], additional_headers=headers, origin=origin, open_timeout=10
        )
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "connection_ack":
                break
        return cls(ws, protocol)

    async def _read(self):
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                kind = message["type"]
                if kind == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                    continue
                if kind == "ka" or kind == "pong":
                    continue
                kind = {"data": "next"}.get(kind, kind)
                queue = self._pending.get(message.get("id"))
                if queue is not None:
                    await queue.put((kind, message.get("payload")))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for queue in self._pending.values():
                queue.put_nowait(("closed", None))

    async def start(self, query: str, variables: dict | None = None) -> str:
        self._ids += 1
        op_id = str(self._ids)
        self._pending[op_id] = asyncio.Queue()
        start = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        await self.ws.send(
            json.dumps({"type": start, "id": op_id, "payload": {"query": query, "variables": variables or {}}})
        )
        return op_id

    async def receive(self, op_id: str, timeout: float = 10.0) -> tuple[str, dict | None]:
        """Next (kind, payload) for an operation: kind is next, error, complete or closed."""
        return await asyncio.wait_for(self._pending[op_id].get(), timeout)

    async def first(self, query: str) -> dict:
        """Run an operation and return its first result's data."""
        op_id = await self.start(query)
        kind, payload = await self.receive(op_id)
        assert kind == "next", (kind, payload)
        return payload["data"]

    async def node(self) -> str:
        """Which Daphne node holds this socket (asked over the socket itself)."""
        return (await self.first(SERVER_NODE))["serverNode"]

    async def close(self):
        await self.ws.close()
        self._reader.cancel()


class RawSocket:
    """A WebSocket that records every message the server sends after connection_ack, verbatim,
    so two servers' output can be compared byte for byte. Can read slowly, or stop reading."""

    def __init__(self, ws, protocol: str, read_delay: float):
        self.ws = ws
        self.protocol = protocol
        self.read_delay = read_delay
        self._frames: list[str] = []
        self._arrived = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls,
        url: str,
        protocol: str,
        *,
        cookie: str | None = None,
        read_delay: float = 0.0,
        receive_buffer: int | None = None,
    ) -> RawSocket:
        sock = None
        if receive_buffer is not None:
            import socket as socket_module
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            sock = socket_module.socket()
            sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        ws = await websockets.connect(
            url,
            subprotocols=[protocol],
            additional_headers={"Cookie": cookie} if cookie else {},
            compression=None,
            open_timeout=10,
            max_queue=4,
            sock=sock,
        )
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        return cls(ws, protocol, read_delay)

    async def _read(self):
        try:
            while True:
                await self._reading.wait()
                raw = await self.ws.recv()
                if self.read_delay:
                    await asyncio.sleep(self.read_delay)
                self._frames.append(raw)
                self._arrived.set()
        except websockets.ConnectionClosed:
            pass

    async def start(
        self, op_id: str, query: str, variables: dict | None = None, operation_name: str | None = None
    ) -> None:
        kind = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        payload = {"query": query, "variables": variables or {}}
        if operation_name:
            payload["operationName"] = operation_name
        await self.ws.send(json.dumps({"type": kind, "id": op_id, "payload": payload}))

    async def complete(self, op_id: str) -> None:
        kind = "complete" if self.protocol == "graphql-transport-ws" else "stop"
        await self.ws.send(json.dumps({"type": kind, "id": op_id}))

    def frames(self) -> list[str]:
        return list(self._frames)

    async def frames_for(self, count: int, timeout: float = 10.0) -> list[str]:
        """Wait until at least `count` messages arrived; return them all."""

        async def enough():
            while len(self._frames) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.frames()

    def pause(self) -> None:
        """Stop reading: the library's small queue fills, then the TCP window closes."""
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    async def close(self) -> None:
        self._reading.set()
        self._reader.cancel()
        await self.ws.close()
