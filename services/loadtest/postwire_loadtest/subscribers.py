"""One load-generator worker process: opens its share of the subscriber sockets and records, for
every notification, which subscriber got which publish at what time.

Runs in a child process (see workers.py) so each process stays well under the 20,000 open-file
limit. It talks to the coordinator over a multiprocessing pipe:
  coordinator -> worker: ("sent", k)   k measured publishes have been sent so far
                         ("mark", phase)  note this process's CPU time now (publish_start, drain_end)
                         ("drop", k)   abort k open subscribers now (test hook)
                         ("finish",)   close everything, send results, exit
  worker -> coordinator: ("progress", {...}) twice a second, ("ramp_done", {...}),
                         ("dropped", k), ("results", {...})
Times are time.monotonic(), which on Linux is one clock for every process on the machine, so
receipts here and publish times in the coordinator can be subtracted.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import os
import signal
import socket
import time
from array import array
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import orjson

from postwire_loadtest import protocol as proto
from postwire_loadtest.documents import POST_NOTIFY, SERVER_NODE
from postwire_loadtest.netutil import new_socket, raise_nofile_limit, target_host_port
from postwire_loadtest.wsclient import ClientProtocol, HandshakeRefused

# Connects in flight at once per worker: an open-loop ramp against a stalled server would
# otherwise pile up unbounded half-open sockets.
MAX_CONNECTS_IN_FLIGHT = 500
PROGRESS_INTERVAL = 0.5
POSTS_OP = proto.POSTS_OP
CLOSE_GRACE_SECONDS = 5.0


@dataclass
class WorkerSpec:
    worker_id: int
    first_index: int
    count: int
    ws_url: str
    protocols: tuple[str, ...]  # protocol of subscriber i is protocols[i % len(protocols)]
    ramp_rate: float  # this worker's share of the sockets-per-second ramp
    connect_timeout: float
    source_addresses: list[str]
    title_prefix: str


@dataclass(eq=False)
class Sub:
    index: int
    protocol: str
    source: str | None
    node: str | None = None
    t_start: float = 0.0
    t_connected: float | None = None  # connection_ack received
    t_subscribed: float | None = None  # postNotify subscribe sent
    t_closed: float | None = None  # left before the end of the run (None: stayed)
    close_reason: str | None = None
    error: str | None = None  # why it never connected
    live: bool = False  # received a warm-up post
    sent_at_subscribe: int = 0
    seen: set = field(default_factory=set)
    ws: ClientProtocol | None = None
    acked: asyncio.Future | None = None

    def row(self) -> tuple:
        return (
            self.index,
            self.protocol,
            self.source,
            self.node,
            self.t_start,
            self.t_connected,
            self.t_subscribed,
            self.t_closed,
            self.close_reason,
            self.error,
            self.live,
        )


SUB_FIELDS = (
    "index",
    "protocol",
    "source",
    "node",
    "t_start",
    "t_connected",
    "t_subscribed",
    "t_closed",
    "close_reason",
    "error",
    "live",
)


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    """Entry point of the child process."""
    # Ctrl-C reaches the whole process group: the coordinator handles it and tells us to finish,
    # so that our receipts still reach the report.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_nofile_limit()
    try:
        import uvloop  # a lighter event loop: the generator's CPU is part of every figure it reports
    except ImportError:
        uvloop = None
    try:
        if uvloop is not None:
            uvloop.run(Worker(conn, spec).run())
        else:
            asyncio.run(Worker(conn, spec).run())
    except KeyboardInterrupt:
        pass
    except BaseException:
        import traceback

        traceback.print_exc()  # the coordinator reports the crash; the reason goes to stderr
        raise


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "connect_timeout"
    if isinstance(exc, HandshakeRefused):
        return f"handshake_http_{exc.status}"
    if isinstance(exc, ConnectionError) and not exc.errno:  # closed before the handshake ended
        return "closed_during_handshake"
    if isinstance(exc, OSError) and exc.errno:
        return f"connect_{errno.errorcode.get(exc.errno, exc.errno)}".lower()
    return f"connect_{type(exc).__name__}"


class AckRefused(Exception):
    pass


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    """Fail a connect step; whoever still awaits it sees `exc`, and a step that already timed out
    does not log 'exception never retrieved'."""
    future.set_exception(exc)
    future.exception()


class Worker:
    def __init__(self, conn: Connection, spec: WorkerSpec):
        self.conn = conn
        self.spec = spec
        self.subs: list[Sub] = []
        self.errors: collections.Counter[str] = collections.Counter()
        # Receipts of measured publishes as four parallel arrays: compact, cheap to pickle.
        self.r_sub = array("i")
        self.r_n = array("i")
        self.r_t = array("d")
        self.r_seq = array("q")
        self.sent = 0
        self.attempted = 0
        self.connected = 0
        self.warm_receipts = 0
        self.foreign = 0  # notifications of posts not from this run
        self.finishing = False
        self.cpu_marks: dict[str, float] = {}
        self.finish = asyncio.Event()
        self.ramp_done = asyncio.Event()

    # --- plumbing --------------------------------------------------------------------------

    def _send(self, message) -> None:
        try:
            self.conn.send(message)
        except (BrokenPipeError, OSError):
            self.finish.set()  # the coordinator is gone: stop

    def _on_command(self) -> None:
        try:
            command = self.conn.recv()
        except (EOFError, OSError):
            self.finish.set()
            return
        kind = command[0]
        if kind == "sent":
            self.sent = command[1]
        elif kind == "drop":
            self._send(("dropped", self._drop(command[1])))
        elif kind == "mark":  # the coordinator entered a phase: note our CPU time at that moment
            self.cpu_marks[command[1]] = time.process_time()
        elif kind == "finish":
            self.finish.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = target_host_port(self.spec.ws_url)
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        self.family, _, _, _, self.addr = infos[0]
        # Our 127.0.0.x source addresses are IPv4; towards an IPv6 target let the kernel choose.
        self.sources = self.spec.source_addresses if self.family == socket.AF_INET else []
        loop.add_reader(self.conn.fileno(), self._on_command)
        # uvloop makes a watched fd non-blocking; the pipe's send()/recv() need whole messages.
        os.set_blocking(self.conn.fileno(), True)
        tasks = [asyncio.create_task(self._ramp()), asyncio.create_task(self._report_loop())]
        await self.finish.wait()
        self.finishing = True
        for task in tasks:
            task.cancel()
        await self._close_all()
        loop.remove_reader(self.conn.fileno())
        self._send(("results", self._results()))

    def _progress(self) -> dict:
        open_subs = [s for s in self.subs if s.t_subscribed is not None and s.t_closed is None]
        outstanding = sum(max(0, self.sent - s.sent_at_subscribe - len(s.seen)) for s in open_subs)
        return {
            "worker": self.spec.worker_id,
            "attempted": self.attempted,
            "connected": self.connected,
            "open": len(open_subs),
            "live": sum(1 for s in open_subs if s.live),
            "receipts": len(self.r_n),
            "sent_seen": self.sent,
            "outstanding": outstanding,
            "errors": dict(self.errors),
        }

    async def _report_loop(self) -> None:
        while True:
            self._send(("progress", self._progress()))
            await asyncio.sleep(PROGRESS_INTERVAL)

    # --- opening sockets ---------------------------------------------------------------------

    async def _ramp(self) -> None:
        """Open-loop ramp: socket k starts at t0 + k/rate, whatever happened to the ones before
        (bounded only by MAX_CONNECTS_IN_FLIGHT)."""
        spec = self.spec
        gate = asyncio.Semaphore(MAX_CONNECTS_IN_FLIGHT)
        pending: set[asyncio.Task] = set()
        t0 = time.monotonic()
        for k in range(spec.count):
            delay = t0 + k / spec.ramp_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            index = spec.first_index + k
            source = self.sources[index % len(self.sources)] if self.sources else None
            sub = Sub(index, spec.protocols[index % len(spec.protocols)], source)
            self.subs.append(sub)
            task = asyncio.create_task(self._subscriber(sub, gate))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await self.ramp_done.wait()
        self._send(("ramp_done", self._progress()))

    def _attempt_resolved(self, gate: asyncio.Semaphore) -> None:
        gate.release()
        self.attempted += 1
        if self.attempted == self.spec.count:
            self.ramp_done.set()

    async def _subscriber(self, sub: Sub, gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        sub.t_start = time.monotonic()
        sock = None
        try:
            async with asyncio.timeout(self.spec.connect_timeout):
                sock = new_socket(self.family, sub.source)
                await loop.sock_connect(sock, self.addr)
                sub.acked = loop.create_future()
                _, ws = await loop.create_connection(
                    lambda: ClientProtocol(
                        self.spec.ws_url,
                        sub.protocol,
                        functools.partial(self._on_text, sub),
                        functools.partial(self._on_close, sub),
                    ),
                    sock=sock,
                )
                sub.ws = ws
                await ws.opened
                ws.send_text(proto.CONNECTION_INIT)
                await sub.acked
            sub.t_connected = time.monotonic()
            ws.send_text(proto.subscribe(sub.protocol, proto.NODE_OP, SERVER_NODE))
            ws.send_text(proto.subscribe(sub.protocol, proto.POSTS_OP, POST_NOTIFY))
            sub.t_subscribed = time.monotonic()
            sub.sent_at_subscribe = self.sent
            self.connected += 1
        except Exception as exc:
            sub.error = "connection_init_refused" if isinstance(exc, AckRefused) else _error_kind(exc)
            self.errors[sub.error] += 1
            if sub.ws is not None:
                sub.ws.abort()
            elif sock is not None:
                sock.close()
        finally:
            self._attempt_resolved(gate)

    # --- receiving (synchronously, from each socket's data_received) ---------------------------

    def _on_text(self, sub: Sub, text: bytes) -> None:
        now = time.monotonic()
        try:
            message = orjson.loads(text)  # ~6x json.loads here; this is the generator's hot path
        except orjson.JSONDecodeError:
            self.errors["invalid_json_from_server"] += 1
            return
        op = message.get("id")
        kind = message.get("type")
        if op == POSTS_OP and (kind == "next" or kind == "data"):  # a notification: the hot path
            self._on_post(sub, message.get("payload") or {}, now)
            return
        kind = proto.kind_of(message)
        if kind == "next":
            if op == proto.NODE_OP:
                sub.node = ((message.get("payload") or {}).get("data") or {}).get("serverNode")
        elif kind == "connection_ack":
            if sub.acked is not None and not sub.acked.done():
                sub.acked.set_result(None)
        elif kind == "ping":
            sub.ws.send_text(proto.PONG)
        elif kind == "error":
            if sub.acked is not None and not sub.acked.done():
                _fail(sub.acked, AckRefused())
                return
            self.errors["subscription_error" if op == proto.POSTS_OP else "server_node_error"] += 1
            if op == proto.POSTS_OP:
                self._left(sub, "subscription_error")
        elif kind == "complete" and op == POSTS_OP:
            self._left(sub, "completed_by_server")

    def _on_close(self, sub: Sub, code: int | None) -> None:
        if sub.t_subscribed is None:
            if sub.acked is not None and not sub.acked.done():
                _fail(sub.acked, ConnectionError("closed before connection_ack"))
            return  # still connecting: _subscriber reports the failure
        self._left(sub, "connection_lost" if code in (None, 1006) else f"closed_{code}", abort=False)

    def _left(self, sub: Sub, reason: str, abort: bool = True) -> None:
        """The subscriber left on its own (or was pushed): a disconnect, not lost deliveries."""
        if sub.t_closed is not None or self.finishing:
            return
        sub.t_closed = time.monotonic()
        sub.close_reason = reason
        self.errors[f"disconnect_{reason}"] += 1
        if abort:
            sub.ws.abort()

    def _on_post(self, sub: Sub, payload: dict, now: float) -> None:
        note = (payload.get("data") or {}).get("postNotify")
        if not note:
            self.errors["payload_without_data"] += 1
            return
        title = note.get("title") or ""
        prefix = self.spec.title_prefix
        if not title.startswith(prefix):
            self.foreign += 1
            return
        tag = title[len(prefix) :]
        if tag.startswith("w"):
            sub.live = True
            self.warm_receipts += 1
            return
        n = int(tag)
        self.r_sub.append(sub.index)
        self.r_n.append(n)
        self.r_t.append(now)
        self.r_seq.append(int(note.get("seq") or -1))
        sub.seen.add(n)

    # --- test hook and shutdown --------------------------------------------------------------

    def _drop(self, k: int) -> int:
        """Abort k open subscribers (lowest indexes first): a client that vanishes mid-run."""
        dropped = 0
        for sub in self.subs:
            if dropped == k:
                break
            if sub.t_subscribed is not None and sub.t_closed is None:
                sub.t_closed = time.monotonic()
                sub.close_reason = "dropped_by_tool"
                sub.ws.abort()
                dropped += 1
        return dropped

    async def _close_all(self) -> None:
        open_ws = [s.ws for s in self.subs if s.ws is not None and s.t_closed is None]
        for ws in open_ws:
            ws.close()
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS
        while time.monotonic() < deadline and any(not ws.transport.is_closing() for ws in open_ws):
            await asyncio.sleep(0.1)
        for ws in open_ws:
            ws.abort()
        await asyncio.sleep(0)

    def _results(self) -> dict:
        return {
            "worker": self.spec.worker_id,
            "subs": [s.row() for s in self.subs],
            "receipts": (self.r_sub, self.r_n, self.r_t, self.r_seq),
            "errors": dict(self.errors),
            "warm_receipts": self.warm_receipts,
            "foreign": self.foreign,
            "cpu_marks": {**self.cpu_marks, "end": time.process_time()},
        }
