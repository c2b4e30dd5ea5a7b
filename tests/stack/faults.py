"""The fault matrix's harness: subscribers that count every seq, and a publisher that never stops.

A `Tracker` behaves like a well-written client: it records the `seq` of every notification, and
whenever its socket closes (or its subscription ends with an error) it reconnects through nginx
and resumes with `after=<last seq>`. A `Publisher` creates and publishes a post every `interval`
seconds, through nginx, whatever is broken. PostgreSQL is the truth: at the end, every tracker
must hold exactly the seqs of the `published` events committed since it went live, in order, once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg

from tests.support.client import POST_NOTIFY_AFTER, GraphQLHttp, Socket


@dataclass
class Tracker:
    url: str
    protocol: str
    seqs: list[int] = field(default_factory=list)
    closes: list[tuple[int | None, str]] = field(default_factory=list)  # (code, reason) per lost socket
    errors: list[str] = field(default_factory=list)  # subscriptions that ended with an error
    nodes: list[str] = field(default_factory=list)  # the node of each connection, in order
    socket: Socket | None = None

    @property
    def node(self) -> str:
        return self.nodes[-1]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.socket = await Socket.open(self.url, protocol=self.protocol)
                self.nodes.append(await self.socket.node())
            except Exception:  # the node it reached is going down, or nginx has none: retry
                await asyncio.sleep(random.uniform(0.1, 0.4))
                continue
            await self._subscribe_until_lost(stop)
        if self.socket is not None:
            await self.socket.close()

    async def _subscribe_until_lost(self, stop: asyncio.Event) -> None:
        socket = self.socket
        while not stop.is_set():
            op = await socket.start(POST_NOTIFY_AFTER, {"after": self.seqs[-1]} if self.seqs else {})
            while not stop.is_set():
                try:
                    kind, payload = await socket.receive(op, 0.5)
                except TimeoutError:
                    continue
                if kind == "next":
                    self.seqs.append(int(payload["data"]["postNotify"]["seq"]))
                elif kind == "closed":
                    self.closes.append((socket.ws.close_code, socket.ws.close_reason or ""))
                    await asyncio.sleep(random.uniform(0.05, 0.3))
                    return
                else:  # error or complete: resubscribe on the same socket, from where it was
                    self.errors.append(f"{kind}: {payload}")
                    break

    def check(self, expected: list[int], since: int) -> None:
        got = [s for s in self.seqs if s > since]
        duplicated = [s for s, n in Counter(got).items() if n > 1]
        lost = sorted(set(expected) - set(got))
        assert not duplicated, f"{self.protocol} subscriber got {duplicated} twice (nodes {self.nodes})"
        assert not lost, (
            f"{self.protocol} subscriber lost {len(lost)} of {len(expected)}: {lost[:20]} (nodes {self.nodes})"
        )
        assert got == expected, f"out of order or unexpected: {got} != {expected}"


class Publisher:
    """Publishes every `interval` s from a thread (requests is blocking), counting outcomes."""

    def __init__(self, http_url: str, staff: tuple[str, str], interval: float = 0.2):
        self.http_url, self.staff, self.interval = http_url, staff, interval
        self.ok = 0
        self.failed: list[str] = []
        self.latencies: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _client(self) -> GraphQLHttp:
        client = GraphQLHttp(self.http_url)
        client.login(*self.staff)
        return client

    def _publish_once(self, client: GraphQLHttp) -> None:
        started = time.monotonic()
        gid, _ = client.create_post("fault matrix")
        result = client.publish(gid)
        assert result["data"]["publishPost"]["published"] is True, result
        self.latencies.append(time.monotonic() - started)

    async def _run(self) -> None:
        client = None
        while not self._stop.is_set():
            try:
                client = client or await asyncio.to_thread(self._client)
                await asyncio.to_thread(self._publish_once, client)
                self.ok += 1
            except Exception as exc:  # counted; what was committed is what must be delivered
                self.failed.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                client = None  # a fresh session (and CSRF token) next time
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                pass

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        await self._task


def published_seqs(database_url: str, since: int) -> list[int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT seq FROM blog_postevent WHERE kind = 'published' AND seq > %s ORDER BY seq", (since,)
        ).fetchall()
    return [r[0] for r in rows]


def report(row: str, outcome: dict, **more) -> None:
    """One line of the matrix's table in the test output (pytest -s, or the -rA summary)."""
    print(f"\nFAULT ROW | {row} | {outcome | more}")


class Matrix:
    """One row: trackers over both protocols, live before publishing starts; `settle()` stops
    publishing, waits for every tracker to hold the last committed seq, and checks each one."""

    def __init__(self, stack, staff: tuple[str, str], subscribers: int = 6, interval: float = 0.2):
        self.stack = stack
        self.trackers = [
            Tracker(stack.ws_url, ("graphql-transport-ws", "graphql-ws")[i % 2]) for i in range(subscribers)
        ]
        self.publisher = Publisher(stack.http_url, staff, interval)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.since = 0
        self.expected: list[int] = []

    async def __aenter__(self) -> Matrix:
        self._tasks = [asyncio.create_task(t.run(self._stop)) for t in self.trackers]
        # Live = every tracker has its first connection and has received a warm-up publish.
        warm = GraphQLHttp(self.stack.http_url)
        warm.login(*self.publisher.staff)
        for _ in range(20):
            if all(t.nodes for t in self.trackers):
                gid, _ = warm.create_post("warm-up")
                warm.publish(gid)
                await asyncio.sleep(0.5)
                if all(t.seqs for t in self.trackers):
                    break
            else:
                await asyncio.sleep(0.2)
        assert all(t.seqs for t in self.trackers), "subscribers never went live"
        self.since = max(max(t.seqs) for t in self.trackers)
        self.publisher.start()
        return self

    async def recovered(self, timeout: float = 60.0) -> float:
        """Seconds until every tracker holds a publication committed after this call: how long
        the fault that was just put back (or a crash) keeps notifications from arriving."""
        started = time.monotonic()
        before = max(published_seqs(self.stack.database_url, self.since) or [self.since])
        while time.monotonic() - started < timeout:
            if all(t.seqs and t.seqs[-1] > before for t in self.trackers):
                return round(time.monotonic() - started, 1)
            await asyncio.sleep(0.1)
        raise AssertionError(f"not recovered within {timeout}s: last seqs {[t.seqs[-1:] for t in self.trackers]}")

    async def settle(self, timeout: float = 60.0) -> dict:
        await self.publisher.stop()
        self.expected = published_seqs(self.stack.database_url, self.since)
        last = self.expected[-1] if self.expected else self.since
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(t.seqs and t.seqs[-1] >= last for t in self.trackers):
            await asyncio.sleep(0.2)
        settled_in = timeout - (deadline - time.monotonic())
        await asyncio.sleep(1.0)  # anything extra (a duplicate) arrives now
        for tracker in self.trackers:
            tracker.check(self.expected, self.since)
        return {
            "published": len(self.expected),
            "failed publishes": len(self.publisher.failed),
            "delivered": sum(len([s for s in t.seqs if s > self.since]) for t in self.trackers),
            "settled_s": round(settled_in, 1),
        }

    async def __aexit__(self, *exc) -> None:
        self._stop.set()
        if self.publisher._task is not None and not self.publisher._task.done():
            await self.publisher.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
