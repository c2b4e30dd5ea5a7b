"""Daphne's periodic walks over every connection, replaced by work on the connections that need
it. Installed with server.realtime.lean_daphne's trims.

Daphne (4.2) walks all of a node's connections on two timers: `application_checker` every second
(reap finished application instances, log what they raised, cancel an instance still running
`application_close_timeout` after its client left, forget the connection) and `timeout_checker`
every 2 s (HTTP and handshake timeouts, the WebSocket lifetime limit, the keep-alive ping). On a
node holding 3,333 idle subscribers the walks were a third of its idle CPU (py-spy: 26% in the
timeout sweep, 7% in the application walk; in an A/B of 20 s windows the node used 27.5-34 ms of
CPU a second, 19-25.5 with this module), each walk touched every socket's objects, and each was a
burst that a request arriving at that moment waited for.

Here, with Daphne's own rules for each connection:
- the application walk visits only connections something happened to: an application that
  finished (its future's done callback) or a client that left (`protocol_disconnected`), and
  keeps visiting a departed one until its application is done or cancelled;
- an open WebSocket waits for its keep-alive ping in a heap ordered by when the ping is due, and
  a tick every SWEEP_SECONDS pings the sockets due and touches no other. A message from the
  client postpones the ping, as in Daphne (a socket's entry is checked against its `last_ping`
  when the entry comes up). Pings go out 20-20.25 s apart where Daphne's were 20-22 s;
- the rest of what the sweep checked (HTTP requests, handshakes in progress) is a small dict
  given Daphne's `check_timeouts` every tick. With a WebSocket lifetime limit
  (`--websocket_timeout` >= 0) open sockets stay in it too, checked every tick as Daphne would.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
import weakref

from server.realtime import wire

logger = logging.getLogger("daphne.server")  # Daphne's logger: the same log lines as before

APPLICATION_CHECK_SECONDS = 1.0  # Daphne's period
SWEEP_SECONDS = 0.25


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
        return server._sweep_books
    except AttributeError:
        server._sweep_books = _Books()
        return server._sweep_books


def protocol_connected(original):
    def connected(self, protocol):
        original(self, protocol)
        books(self).swept[protocol] = None

    return connected


def protocol_disconnected(original):
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
            wire.send_auto_ping(protocol)
            protocol.last_ping = time.time()
        heapq.heappush(state.pings, (protocol.last_ping + interval, next(state.order), ref))
    reactor.callLater(SWEEP_SECONDS, self.timeout_checker)


def install(server_class) -> None:
    server_class.protocol_connected = protocol_connected(server_class.protocol_connected)
    server_class.protocol_disconnected = protocol_disconnected(server_class.protocol_disconnected)
    server_class.application_checker = application_checker
    server_class.timeout_checker = timeout_checker
