"""A single reader's inbound-message queue, lighter than asyncio.Queue.

Every socket holds two of these while it waits: Daphne's (what it read from the socket for the
application, fast path lean_sockets) and the consumer's (what strawberry's protocol handler has
not handled yet). An asyncio.Queue holds three deques and an Event of its own; this is a list
and, while its one reader waits, one future.
"""

from __future__ import annotations

import asyncio


class Inbox:
    """`put_nowait`, `get` and `qsize` as asyncio.Queue has them, for exactly one reader at a time
    (Daphne's application instance, strawberry's handler). A cancelled `get` loses nothing."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list = []
        self._waiter: asyncio.Future | None = None

    def put_nowait(self, item) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self):
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def qsize(self) -> int:
        return len(self._items)

    def items(self) -> list:
        """What is waiting, oldest first (a view: do not change it)."""
        return self._items
