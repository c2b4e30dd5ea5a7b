"""Daphne internals: the server's connection objects, and its per-connection walks.

Checked against: daphne 4.2.3 (release series 4.2).
Names used:
  daphne.server.Server: handle_reply (an application's `send` is functools.partial of it over
    the connection's protocol), create_application (copied), application_checker (copied),
    timeout_checker (copied), protocol_connected, protocol_disconnected (wrapped), connections,
    application, application_close_timeout, ping_interval, websocket_timeout, stop
  daphne.ws_protocol.WebSocketProtocol: application_queue, last_ping, check_timeouts,
    handle_exception, server
  daphne.http_protocol.WebRequest: process (wrapped), channel.requests, transport
  daphne.cli.CommandLineInterface.entrypoint (public: Daphne's command line)
Copied (fingerprints in SOURCES; a test fails when the installed source differs):
  Server.create_application, Server.application_checker, Server.timeout_checker (with
  WebSocketProtocol.check_timeouts, whose body the sweep applies per socket).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import time
import weakref
from functools import partial

from server.compat import checks
from server.realtime.inbox import Inbox

PACKAGE, CHECKED = "daphne", ("4.2",)
# Names of theirs distinctive enough that postwire's code outside this package must not use
# them (tests/api/compat/test_boundary.py).
INTERNALS = (
    "application_queue",
    "handle_reply",
    "create_application",
    "application_checker",
    "timeout_checker",
    "protocol_connected",
    "protocol_disconnected",
    "check_timeouts",
    "last_ping",
    "application_close_timeout",
)

# Upstream functions copied here, or whose internal state a fast path reads or writes.
SOURCES = {
    "daphne.server.Server.handle_reply": "9d9dbaea6de0657a",
    "daphne.server.Server.create_application": "f1e300b4ecf636c8",
    "daphne.server.Server.application_checker": "ccb688341a7d0bc1",
    "daphne.server.Server.timeout_checker": "6b70373a3a77cb2b",
    "daphne.server.Server.protocol_connected": "3fe5af10e11e8ad7",
    "daphne.server.Server.protocol_disconnected": "c1f5fe8cdedc09dc",
    "daphne.ws_protocol.WebSocketProtocol.check_timeouts": "0e2ee6816a93a598",
    "daphne.http_protocol.WebRequest.process": "e9babd1c97ce710b",
}

logger = logging.getLogger("daphne.server")  # Daphne's logger: the same log lines as Daphne's own walks

APPLICATION_CHECK_SECONDS = 1.0  # Daphne's period
SWEEP_SECONDS = 0.25


@functools.cache
def _base() -> str | None:
    return checks.first(
        checks.release(PACKAGE, CHECKED),
        checks.missing(
            "daphne.server.Server",
            ("handle_reply", "create_application", "application_checker", "timeout_checker"),
        ),
    )


def probe_socket_of_send() -> str | None:
    return checks.first(
        _base(), checks.unchanged({"daphne.server.Server.handle_reply": SOURCES["daphne.server.Server.handle_reply"]})
    )


def probe_input_queue() -> str | None:
    return checks.first(
        _base(),
        checks.assigned_in("daphne.ws_protocol.WebSocketProtocol", ("application_queue",)),
        checks.unchanged(
            {"daphne.server.Server.create_application": SOURCES["daphne.server.Server.create_application"]}
        ),
    )


def probe_lean() -> str | None:
    names = ("daphne.server.Server.create_application", "daphne.http_protocol.WebRequest.process")
    return checks.first(
        _base(),
        checks.unchanged({name: SOURCES[name] for name in names}),
        checks.assigned_in("daphne.http_protocol.WebRequest", ("channel", "transport")),
    )


def probe_sweeps() -> str | None:
    names = (
        "daphne.server.Server.create_application",
        "daphne.server.Server.application_checker",
        "daphne.server.Server.timeout_checker",
        "daphne.server.Server.protocol_connected",
        "daphne.server.Server.protocol_disconnected",
        "daphne.ws_protocol.WebSocketProtocol.check_timeouts",
    )
    return checks.first(
        _base(),
        checks.unchanged({name: SOURCES[name] for name in names}),
        checks.missing("daphne.ws_protocol.WebSocketProtocol", ("check_timeouts", "handle_exception")),
        checks.assigned_in("daphne.ws_protocol.WebSocketProtocol", ("last_ping",)),
    )


# --- one connection ------------------------------------------------------------------------


@functools.cache
def _handle_reply():
    from daphne.server import Server

    return Server.handle_reply


def protocol_of(send):
    """The autobahn protocol of the connection an ASGI `send` belongs to, when Daphne handed it
    over plain TCP (a TLS transport has no socket of its own to write to); else None."""
    if isinstance(send, functools.partial) and getattr(send.func, "__func__", None) is _handle_reply():
        protocol = send.args[0] if send.args else None
        transport = getattr(protocol, "transport", None)
        if transport is not None and hasattr(transport, "socket") and hasattr(transport, "dataBuffer"):
            return protocol
    return None


def waiting(protocol) -> tuple[int, int]:
    """Messages (and their bytes) Daphne has read from this socket that the application has not
    taken yet. Daphne reads without flow control into an unbounded queue: a flooding client grows it."""
    queue = protocol.application_queue
    count = queue.qsize()
    if count == 0:
        return 0, 0
    waiting = queue.items() if isinstance(queue, Inbox) else queue._queue  # asyncio.Queue on untrimmed Daphne
    return count, sum(len(m.get("text") or m.get("bytes") or b"") for m in waiting)


# --- the server, trimmed (installed by `postwire ws` before Daphne starts) -----------------


def install(*, lean: bool, sweeps: bool, ping) -> None:
    """Patch Daphne's classes: `lean` (an Inbox per connection, the upgraded request let go),
    `sweeps` (walks only over connections that need it; `ping(protocol)` sends a keep-alive)."""
    from daphne import http_protocol
    from daphne import server as daphne_server

    server = daphne_server.Server
    if getattr(server.create_application, "__module__", None) == __name__:
        return  # installed already
    if lean or sweeps:
        server.create_application = _create_application(lean=lean, sweeps=sweeps)
    if lean:
        http_protocol.WebRequest.process = _process_request(http_protocol.WebRequest.process)
    if sweeps:
        install_sweeps(server, ping)


def _create_application(*, lean: bool, sweeps: bool):
    def create_application(self, protocol, scope):
        """daphne.server.Server.create_application (4.2), with an Inbox for the input queue
        (lean), and the application reaped when it finishes (sweeps)."""
        assert "application_instance" not in self.connections[protocol]
        input_queue = Inbox() if lean else asyncio.Queue()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope,
            receive=input_queue.get,
            send=partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        future = asyncio.ensure_future(application_instance, loop=asyncio.get_event_loop())
        if sweeps:
            future.add_done_callback(partial(application_finished, self, protocol))
        self.connections[protocol]["application_instance"] = future
        return input_queue

    create_application.__module__ = __name__
    return create_application


def _process_request(original):
    def process(self):
        result = original(self)
        # A WebSocket upgrade hands the connection to autobahn and sets the request's transport
        # to None; the HTTP channel, still the transport's producer, would keep the request (its
        # headers, both Headers objects, its body buffer) for the socket's whole life.
        if self.transport is None and self in self.channel.requests:
            self.channel.requests.remove(self)
        return result

    return process


# --- Daphne's two walks, over the connections that need them ------------------------------
#
# Daphne walks all of a node's connections on two timers: `application_checker` every second
# (reap finished applications, log what they raised, cancel one still running
# `application_close_timeout` after its client left, forget the connection) and
# `timeout_checker` every 2 s (HTTP and handshake timeouts, the WebSocket lifetime limit, the
# keep-alive ping). Here, with Daphne's rules per connection: the application walk visits only
# connections something happened to (an application's done callback, a client that left); an
# open WebSocket waits for its ping in a heap ordered by due time, and a tick every
# SWEEP_SECONDS pings the sockets due; the rest (HTTP requests, handshakes in progress, and open
# sockets when a WebSocket lifetime limit is set) get Daphne's check_timeouts every tick.


class _Books:
    """What the two timers work from, kept on the server."""

    __slots__ = ("departing", "swept", "pings", "order")

    def __init__(self) -> None:
        self.departing: dict = {}  # protocol -> None: finished application or departed client
        self.swept: dict = {}  # protocol -> None: given Daphne's check_timeouts every tick
        self.pings: list = []  # heap of (due, n, weakref to an open WebSocket protocol)
        self.order = itertools.count()  # ties in due time never compare protocols


def books(server) -> _Books:
    try:
        return server._postwire_books
    except AttributeError:
        server._postwire_books = _Books()
        return server._postwire_books


def install_sweeps(server_class, ping) -> None:
    """`ping(protocol)` sends one keep-alive ping (autobahn's, or the keepalive fast path's)."""
    server_class.postwire_ping = staticmethod(ping)
    server_class.protocol_connected = _protocol_connected(server_class.protocol_connected)
    server_class.protocol_disconnected = _protocol_disconnected(server_class.protocol_disconnected)
    server_class.application_checker = application_checker
    server_class.timeout_checker = timeout_checker


def _protocol_connected(original):
    def connected(self, protocol):
        original(self, protocol)
        books(self).swept[protocol] = None

    return connected


def _protocol_disconnected(original):
    def disconnected(self, protocol):
        original(self, protocol)
        books(self).departing[protocol] = None

    return disconnected


def application_finished(server, protocol, future) -> None:
    """Done callback of a connection's application future."""
    books(server).departing[protocol] = None


def application_checker(self):
    """daphne.server.Server.application_checker (4.2), over the connections that need it."""
    from twisted.internet import reactor

    departing = books(self).departing
    for protocol in list(departing):
        details = self.connections.get(protocol)
        if details is not None:
            _check_application(self, protocol, details)
        # A departed client whose application still runs stays until it ends or is cancelled.
        if protocol not in self.connections or not details.get("disconnected"):
            del departing[protocol]
    reactor.callLater(APPLICATION_CHECK_SECONDS, self.application_checker)


def _check_application(self, protocol, details) -> None:
    """The body of Daphne's application_checker loop, for one connection."""
    disconnected = details.get("disconnected", None)
    application_instance = details.get("application_instance", None)
    if disconnected and time.time() - disconnected > self.application_close_timeout:
        if application_instance and not application_instance.done():
            logger.warning(
                "Application instance %r for connection %s took too long to shut down and was killed.",
                application_instance,
                repr(protocol),
            )
            application_instance.cancel()
    if application_instance and application_instance.done():
        try:
            exception = application_instance.exception()
        except asyncio.CancelledError:
            pass
        else:
            if exception:
                if isinstance(exception, KeyboardInterrupt):
                    self.stop()
                else:
                    logger.error("Exception inside application: %s", exception, exc_info=exception)
                    if not disconnected:
                        protocol.handle_exception(exception)
        del details["application_instance"]
        application_instance = None
    if not application_instance and disconnected:
        del self.connections[protocol]


def timeout_checker(self):
    """daphne.server.Server.timeout_checker (4.2): the pings due, and the connections not pinged."""
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import reactor

    state = books(self)
    interval = self.ping_interval
    heap_pings = self.websocket_timeout < 0  # else open sockets need check_timeouts for the limit
    for protocol in list(state.swept):
        if protocol not in self.connections:
            del state.swept[protocol]
        elif heap_pings and isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN:
            del state.swept[protocol]
            heapq.heappush(state.pings, (protocol.last_ping + interval, next(state.order), weakref.ref(protocol)))
        else:
            protocol.check_timeouts()

    now = time.time()
    due = []
    while state.pings and state.pings[0][0] <= now:
        due.append(heapq.heappop(state.pings))
    for _, _, ref in due:
        protocol = ref()
        if protocol is None or protocol.state != protocol.STATE_OPEN:
            continue  # closed or closing: Daphne pings open sockets only
        if now - protocol.last_ping > interval:  # Daphne's test: a message since postpones it
            self.postwire_ping(protocol)
            protocol.last_ping = time.time()
        heapq.heappush(state.pings, (protocol.last_ping + interval, next(state.order), ref))
    reactor.callLater(SWEEP_SECONDS, self.timeout_checker)


def websocket_factory():
    """Daphne's autobahn factory class (its protocol class is derived per configuration)."""
    from daphne.ws_protocol import WebSocketFactory

    return WebSocketFactory


def import_server() -> None:
    """Import Daphne's server module, which installs Twisted's asyncio reactor."""
    import daphne.server  # noqa: F401


def run_command_line() -> None:
    """Daphne's own command line (`daphne ...`), as `postwire ws` runs it."""
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()
