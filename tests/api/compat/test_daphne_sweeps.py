"""The sweeps fast path (server.compat.daphne) on a Daphne Server object driven by hand: a fake
clock, the reactor's timers recorded, protocols that record what is done to them. (test_daphne_server.py checks the
same on real servers and sockets: pings received, closed sockets forgotten, hung applications
cancelled, failed ones closed with 1011.)"""

import asyncio

import pytest
from daphne import server as daphne_server
from daphne import ws_protocol

from server.compat import daphne as daphne_sweeps

pytestmark = pytest.mark.fast_path("sweeps")

INTERVAL = 20.0


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def time(self):
        return self.now


class Server(daphne_server.Server):
    """Daphne's Server with the sweeps installed on this subclass only."""


daphne_sweeps.install_sweeps(Server, ping=lambda protocol: protocol.pings.append(protocol._clock.now))


class WebSocket(ws_protocol.WebSocketProtocol):
    """A Daphne WebSocket protocol without a transport: records pings (sent through the ping
    given to install_sweeps) and check_timeouts."""

    def __init__(self, clock, state="open"):  # no super().__init__: nothing here is wired
        self.state = self.STATE_OPEN if state == "open" else self.STATE_CONNECTING
        self.last_ping = clock.now
        self.pings: list[float] = []
        self.checked = 0
        self._clock = clock
        self.client_addr, self.path = None, b"/"  # what Daphne's repr reads

    def check_timeouts(self):
        self.checked += 1


class Request:
    """An HTTP request in progress, as the sweep sees it."""

    def __init__(self):
        self.checked = 0

    def check_timeouts(self):
        self.checked += 1


@pytest.fixture
def clock(monkeypatch):
    from twisted.internet import reactor

    clock = Clock()
    monkeypatch.setattr(daphne_sweeps, "time", clock)
    monkeypatch.setattr(daphne_server, "time", clock)
    monkeypatch.setattr(reactor, "callLater", lambda delay, f, *args: None)
    return clock


def make_server(websocket_timeout=-1) -> Server:
    server = Server(
        application=None,
        endpoints=["tcp:port=0:interface=127.0.0.1"],  # never listened on: the server is not run
        ping_interval=INTERVAL,
        websocket_timeout=websocket_timeout,
        application_close_timeout=10,
    )
    server.connections = {}  # what Server.run starts with
    return server


def run_for(server, clock, seconds):
    """Tick the sweep every SWEEP_SECONDS for `seconds`."""
    for _ in range(round(seconds / daphne_sweeps.SWEEP_SECONDS)):
        clock.now += daphne_sweeps.SWEEP_SECONDS
        server.timeout_checker()


def test_open_sockets_are_pinged_when_due_and_nothing_else_is_done_to_them(clock):
    server = make_server()
    fresh, half, overdue = WebSocket(clock), WebSocket(clock), WebSocket(clock)
    half.last_ping -= INTERVAL / 2
    overdue.last_ping -= INTERVAL + 5
    handshaking, request = WebSocket(clock, state="connecting"), Request()
    for protocol in (fresh, half, overdue, handshaking, request):
        server.protocol_connected(protocol)

    server.timeout_checker()
    assert overdue.pings == [clock.now] and fresh.pings == half.pings == []
    run_for(server, clock, 2 * INTERVAL + 1)
    start = clock.now - (2 * INTERVAL + 1)
    # Each open socket pinged once per interval, within one tick of its due time.
    for protocol, first_due in ((half, start + INTERVAL / 2), (fresh, start + INTERVAL)):
        assert len(protocol.pings) == 2, protocol.pings
        assert 0 < protocol.pings[0] - first_due <= daphne_sweeps.SWEEP_SECONDS + 1e-6
        assert INTERVAL < protocol.pings[1] - protocol.pings[0] <= INTERVAL + daphne_sweeps.SWEEP_SECONDS + 1e-6
    # Open sockets are never walked; what is not an open socket gets Daphne's check every tick.
    assert fresh.checked == half.checked == overdue.checked == 0
    ticks = round((2 * INTERVAL + 1) / daphne_sweeps.SWEEP_SECONDS) + 1
    assert handshaking.checked == request.checked == ticks
    assert handshaking.pings == []


def test_a_message_from_the_client_postpones_its_ping(clock):
    server = make_server()
    socket = WebSocket(clock)
    server.protocol_connected(socket)
    run_for(server, clock, INTERVAL - 5)
    socket.last_ping = clock.now  # what Daphne's onMessage does
    message_at = clock.now
    run_for(server, clock, INTERVAL - 1)
    assert socket.pings == []
    run_for(server, clock, 2)
    assert (
        len(socket.pings) == 1 and 0 < socket.pings[0] - (message_at + INTERVAL) <= daphne_sweeps.SWEEP_SECONDS + 1e-6
    )


def test_closed_sockets_are_not_pinged_and_leave_the_heap(clock):
    server = make_server()
    sockets = [WebSocket(clock) for _ in range(3)]
    for socket in sockets:
        server.protocol_connected(socket)
    server.timeout_checker()
    sockets[0].state = sockets[0].STATE_CLOSED
    del server.connections[sockets[1]]
    sockets[1].state = sockets[1].STATE_CLOSED
    run_for(server, clock, INTERVAL + 1)
    assert [len(s.pings) for s in sockets] == [0, 0, 1]
    assert len(daphne_sweeps.books(server).pings) == 1


def test_with_a_websocket_lifetime_limit_open_sockets_get_daphnes_check(clock):
    server = make_server(websocket_timeout=3600)
    socket = WebSocket(clock)
    server.protocol_connected(socket)
    run_for(server, clock, 1)
    assert socket.checked == 4 and daphne_sweeps.books(server).pings == []


def test_connections_that_leave_the_server_leave_the_sweep(clock):
    server = make_server()
    request = Request()
    server.protocol_connected(request)
    server.timeout_checker()
    del server.connections[request]
    server.timeout_checker()
    assert request.checked == 1 and daphne_sweeps.books(server).swept == {}


class CountingDetails(dict):
    """A connection's details that count how often the application walk looks at them."""

    read: set[int] = set()

    def get(self, *args):
        CountingDetails.read.add(id(self))
        return super().get(*args)


def test_the_application_walk_visits_only_finished_applications_and_departed_clients(clock):
    loop = asyncio.new_event_loop()
    try:
        server = make_server()
        live = [WebSocket(clock) for _ in range(50)]
        for protocol in live:
            server.protocol_connected(protocol)
            future = loop.create_future()
            server.connections[protocol] = CountingDetails(server.connections[protocol], application_instance=future)

        failed, left, hung = live[0], live[1], live[2]
        failures = []
        failed.handle_exception = failures.append
        error = RuntimeError("boom")
        future = server.connections[failed]["application_instance"]
        future.add_done_callback(
            lambda f: daphne_sweeps.application_finished(server, failed, f)
        )  # as create_application
        future.set_exception(error)
        loop.run_until_complete(asyncio.sleep(0))  # done callbacks run
        server.protocol_disconnected(left)
        server.connections[left]["application_instance"].set_result(None)
        server.protocol_disconnected(hung)

        CountingDetails.read = set()
        server.application_checker()
        # failed: reaped, its exception handed to the protocol, connection kept (client still there)
        assert failures == [error] and "application_instance" not in server.connections[failed]
        # left: client gone and application done, forgotten
        assert left not in server.connections
        # hung: still within application_close_timeout, kept and cancelled later
        future = server.connections[hung]["application_instance"]
        assert not future.cancelled() and hung in server.connections
        assert len(CountingDetails.read) == 3  # three connections visited, not 50
        assert set(daphne_sweeps.books(server).departing) == {hung}

        clock.now += 11
        server.application_checker()
        assert future.cancelled()
        server.application_checker()
        assert hung not in server.connections and daphne_sweeps.books(server).departing == {}
        assert len(server.connections) == 48
    finally:
        loop.close()
