"""The Daphne role's entry point (`postwire ws`): Daphne's own command line, on uvloop.

Daphne runs Twisted's asyncio reactor on a loop it creates when `daphne.server` is imported, so
the loop policy must be set before that import. uvloop makes every event-loop pass cheaper,
and a Daphne node's delivery work all runs on that one loop (POSTWIRE_WS_UVLOOP=false: asyncio's).
SIGTERM starts a graceful drain (server.realtime.drain).
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
    from daphne.cli import CommandLineInterface  # installs Twisted's asyncio reactor
    from twisted.internet import reactor

    from server.realtime import lean_daphne

    # Before Django is set up: this touches only Daphne's and autobahn's classes.
    lean_daphne.install()

    # SIGTERM drains the node instead of dropping every socket at once (server/realtime/drain.py).
    # Installed once running: Twisted sets its own handlers on startup.
    reactor.callWhenRunning(_install_drain)
    CommandLineInterface.entrypoint()


def _install_drain() -> None:
    from server.realtime import drain

    drain.install()


if __name__ == "__main__":
    main()
