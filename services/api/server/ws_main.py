"""The Daphne role's entry point (`postwire ws`): Daphne's own command line, on uvloop.

Daphne runs Twisted's asyncio reactor on a loop it creates when `daphne.server` is imported, so
the loop policy must be set before that import. uvloop makes every event-loop pass cheaper,
and a Daphne node's delivery work all runs on that one loop (POSTWIRE_WS_UVLOOP=false: asyncio's).
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
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
