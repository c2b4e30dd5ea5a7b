"""Twisted internals: a TCP connection's write buffers, and the reactor's listening ports.

Checked against: Twisted 26.10.0 (release series 26.10).
Names used:
  twisted.internet.abstract.FileDescriptor: dataBuffer, offset, _tempDataLen, write, doWrite,
    connected, disconnecting
  twisted.internet.tcp.Connection: socket (public as getHandle(); read once per write here)
  twisted.internet.reactor.getReaders (IReactorFDSet), twisted.internet.tcp.Port.stopListening
Relied on (fingerprints in SOURCES): FileDescriptor.write and doWrite, whose buffering the unsent
count below mirrors.
"""

from __future__ import annotations

import functools

from server.compat import checks

PACKAGE, CHECKED = "twisted", ("26.10",)
# Names of theirs distinctive enough that postwire's code outside this package must not use
# them (tests/api/compat/test_boundary.py).
INTERNALS = ("dataBuffer", "getReaders", "stopListening", "getHandle", "callFromThread", "callWhenRunning")

SOURCES = {
    "twisted.internet.abstract.FileDescriptor.write": "3e46c97fc173bc7e",
    "twisted.internet.abstract.FileDescriptor.doWrite": "a986d7b1b1054e43",
}


@functools.cache
def probe_buffers() -> str | None:
    return checks.first(
        checks.release(PACKAGE, CHECKED),
        checks.missing("twisted.internet.abstract.FileDescriptor", ("dataBuffer", "offset", "write")),
        checks.assigned_in("twisted.internet.abstract.FileDescriptor", ("_tempDataLen", "connected", "disconnecting")),
        checks.unchanged(SOURCES),
    )


def probe_listening() -> str | None:
    return checks.first(
        checks.release(PACKAGE, CHECKED),
        checks.missing("twisted.internet.tcp.Port", ("stopListening",)),
    )


def unsent_bytes(transport) -> int:
    """Bytes written to this connection that the kernel has not taken yet."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def write_now(transport, frame: bytes) -> None:
    """Write a whole frame: straight to the kernel when nothing is queued ahead of it (one
    send(), without arming the reactor's writer), otherwise behind what is queued."""
    if not (len(transport.dataBuffer) - transport.offset + transport._tempDataLen):
        try:
            sent = transport.socket.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # a dead peer: Twisted's write path notices and closes it
        if sent == len(frame):
            return
        frame = frame[sent:]
    transport.write(frame)


def can_write(transport) -> bool:
    return transport is not None and transport.connected and not transport.disconnecting


def set_send_buffer(transport, size: int) -> None:
    """A fixed kernel send buffer instead of Linux's autotuned one (up to 4 MiB on loopback)."""
    import socket

    transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def stop_listening() -> int:
    """Close the reactor's listening TCP ports (Daphne's), keeping the connections accepted."""
    from twisted.internet import reactor, tcp

    ports = [reader for reader in reactor.getReaders() if isinstance(reader, tcp.Port)]
    for port in ports:
        port.stopListening()
    return len(ports)


def call_when_running(fn) -> None:
    from twisted.internet import reactor

    reactor.callWhenRunning(fn)


def call_from_thread(fn) -> None:
    """Run `fn` on the reactor's thread (safe from a signal handler)."""
    from twisted.internet import reactor

    reactor.callFromThread(fn)


def stop_reactor() -> None:
    from twisted.internet import reactor

    reactor.stop()
