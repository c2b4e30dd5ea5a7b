"""What every WebSocket handshake and every idle socket pays under Daphne that postwire does not
need, trimmed. Installed by the `postwire ws` entry point (server.ws_main) before Daphne starts,
and only on the Daphne/autobahn/Twisted releases server.realtime.wire supports; elsewhere Daphne
runs unchanged.

Where a connect's CPU went (py-spy on one node, 3,000 sockets opened at 500/s):
- autobahn builds a pprint of its ~30 protocol options for a debug line on every connection,
  whether or not debug logging is on (8% of the node's CPU in the ramp); it is now formatted only
  if that line is written;
- autobahn copies those options from the factory into every protocol's __dict__ (~3 KiB per idle
  socket); Daphne has one factory, configured once, so the values now live on a protocol subclass
  made from it and every instance reads them from its class;
- Daphne gives each connection an asyncio.Queue for what it read (three deques, ~3 KiB per idle
  socket); it gets an Inbox instead (server.realtime.inbox);
- the HTTP request that was upgraded stays referenced by Twisted's HTTP channel after the
  upgrade (~3 KiB per idle socket); it is let go, and so is autobahn's parse of the handshake
  once the socket is open (~2 KiB).

Daphne's two periodic walks over every connection (timeouts and pings, finished applications)
are replaced by work on the connections that need it: server.realtime.daphne_sweeps.
"""

from __future__ import annotations

import asyncio
import logging
import pprint
from functools import partial

from server.realtime import daphne_sweeps
from server.realtime.inbox import Inbox
from server.realtime.wire import check_supported, take_auto_pong

log = logging.getLogger(__name__)


class _Pretty:
    """pprint.pformat(obj), computed only when a log line that holds it is formatted."""

    __slots__ = ("obj",)

    def __init__(self, obj) -> None:
        self.obj = obj

    def __str__(self) -> str:
        return pprint.pformat(self.obj)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _timings_str(timings) -> str:
    return pprint.pformat(timings._timings)  # Timings.__str__ must return a str, not a _Pretty


class _HandshakeForgotten:
    """Lets go of autobahn's parse of the opening handshake once the socket is open: the raw
    request and its headers as a dict of strings (~2 KiB per idle socket). Only the handshake
    reads them; Daphne has copied the headers into the ASGI scope, which keeps them."""

    def onOpen(self):
        super().onOpen()
        self.http_headers.clear()  # the same dict as the ConnectionRequest's that Daphne keeps
        self.http_request_data = b""


class _LeanReads:
    """Reads without what a WebSocket never needed: the pong answering Daphne's keep-alive ping is
    handled inline (server.realtime.wire.take_auto_pong); everything else goes to autobahn, minus
    the debug line whose arguments autobahn formatted on every read, logged or not."""

    def dataReceived(self, data):
        if not take_auto_pong(self, data):
            self._dataReceived(data)


def _as_class_attribute(value):
    """A function among the options (perMessageCompressionAccept) must not become a method."""
    return staticmethod(value) if hasattr(type(value), "__get__") else value


def _lean_protocol_class(factory) -> type:
    """The factory's protocol class with the factory's current options as class attributes:
    autobahn copies an option into the instance only when the instance lacks it."""
    base = factory.protocol
    base = getattr(base, "_lean_base", base)
    options = {name: _as_class_attribute(getattr(factory, name)) for name in base.CONFIG_ATTRS}
    namespace = {**options, "_lean_base": base, "__module__": __name__}
    return type(base.__name__, (_HandshakeForgotten, _LeanReads, base), namespace)


def _set_protocol_options(original):
    def set_protocol_options(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.protocol = _lean_protocol_class(self)

    return set_protocol_options


def _create_application(self, protocol, scope):
    """daphne.server.Server.create_application (4.2), with an Inbox for the input queue, and the
    application reaped when it finishes (daphne_sweeps)."""
    assert "application_instance" not in self.connections[protocol]
    input_queue = Inbox()
    scope.setdefault("asgi", {"version": "3.0"})
    application_instance = self.application(
        scope=scope,
        receive=input_queue.get,
        send=partial(self.handle_reply, protocol),
    )
    if protocol not in self.connections:
        return None
    future = asyncio.ensure_future(application_instance, loop=asyncio.get_event_loop())
    future.add_done_callback(partial(daphne_sweeps.application_finished, self, protocol))
    self.connections[protocol]["application_instance"] = future
    return input_queue


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


def install() -> bool:
    """Trim Daphne's per-connection costs; False (and nothing changed) on releases not supported."""
    reason = check_supported()
    if reason is not None:
        log.warning("Daphne runs untrimmed: %s", reason)
        return False
    import autobahn.websocket.protocol as autobahn_protocol
    from daphne import http_protocol, ws_protocol
    from daphne import server as daphne_server

    if getattr(daphne_server.Server.create_application, "__module__", None) == __name__:
        return True  # installed already
    autobahn_protocol.pformat = _Pretty
    autobahn_protocol.Timings.__str__ = _timings_str
    factory = ws_protocol.WebSocketFactory
    factory.setProtocolOptions = _set_protocol_options(factory.setProtocolOptions)
    daphne_server.Server.create_application = _create_application
    daphne_sweeps.install(daphne_server.Server)
    http_protocol.WebRequest.process = _process_request(http_protocol.WebRequest.process)
    return True
