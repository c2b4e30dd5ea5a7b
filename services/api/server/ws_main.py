"""The Daphne role's entry point (`postwire ws`): Daphne's own command line, on uvloop.

Daphne runs Twisted's asyncio reactor on a loop it creates when `daphne.server` is imported, so
the loop policy must be set before that import. uvloop makes every event-loop pass cheaper,
and a Daphne node's delivery work all runs on that one loop (POSTWIRE_WS_UVLOOP=false: asyncio's).
Before Daphne starts, the fast paths that change Daphne's and autobahn's classes are installed
(each only if its probe passed: server.compat). SIGTERM starts a graceful drain
(server.realtime.drain).
"""

import asyncio
import os
import sys


def main() -> None:
    if os.environ.get("POSTWIRE_WS_UVLOOP", "true").lower() not in ("0", "false", "no", "off"):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if "daphne.server" in sys.modules:
        raise RuntimeError("daphne.server was imported before the event loop policy was set")
    from server.compat import daphne, twisted

    daphne.import_server()  # installs Twisted's asyncio reactor on the loop just chosen
    install_fast_paths()
    # SIGTERM drains the node instead of dropping every socket at once (server/realtime/drain.py).
    # Installed once running: Twisted sets its own handlers on startup.
    twisted.call_when_running(_install_drain)
    daphne.run_command_line()


_installed = False


def install_fast_paths() -> None:
    """Before Django is set up: these touch only Daphne's and autobahn's classes (once)."""
    global _installed
    if _installed:
        return
    _installed = True
    from server import compat
    from server.compat import autobahn, daphne
    from server.realtime.sockets import write_frame

    lean, keepalive, sweeps = compat.on("lean_sockets"), compat.on("keepalive"), compat.on("sweeps")
    if lean or keepalive:
        autobahn.install_protocol_class(daphne.websocket_factory(), lean=lean, keepalive=keepalive)
    if keepalive:

        def ping(protocol):
            autobahn.send_auto_ping(protocol, write_frame)
    else:
        ping = autobahn.send_stock_ping
    daphne.install(lean=lean, sweeps=sweeps, ping=ping)


def _install_drain() -> None:
    from server.realtime import drain

    drain.install()


if __name__ == "__main__":
    main()
