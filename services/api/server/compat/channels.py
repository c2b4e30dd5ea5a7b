"""Channels internals: how a consumer reads its ASGI messages.

Checked against: channels 4.3.2 (release series 4.3).
Names used:
  channels.consumer.AsyncConsumer.__call__ and dispatch (replaced for a consumer without a
    channel-layer channel: what they do, minus the parts such a consumer does not need),
  get_handler_name, StopConsumer; the attributes __call__ sets: scope, channel_layer, base_send
Copied (fingerprints in SOURCES): AsyncConsumer.__call__, AsyncConsumer.dispatch.
"""

from __future__ import annotations

import asyncio
import functools

from server.compat import checks

PACKAGE, CHECKED = "channels", ("4.3",)
# Names of theirs distinctive enough that postwire's code outside this package must not use
# them (tests/api/compat/test_boundary.py).
INTERNALS = ("base_send", "get_handler_name")

SOURCES = {
    "channels.consumer.AsyncConsumer.__call__": "e52238720872dbc3",
    "channels.consumer.AsyncConsumer.dispatch": "39f34e7d4fb0f655",
}


@functools.cache
def probe_consumer_loop() -> str | None:
    return checks.first(
        checks.release(PACKAGE, CHECKED),
        checks.missing("channels.consumer", ("get_handler_name", "AsyncConsumer")),
        checks.unchanged(SOURCES),
    )


async def read_socket(consumer, scope, receive, send) -> None:
    """AsyncConsumer.__call__ for a consumer that holds no channel-layer channel: the socket read
    in a plain loop. Channels' await_many_dispatch wraps every receive() in a task and an
    asyncio.wait (a task, a future and their callbacks per inbound message, and a task held by
    every idle socket); with one source there is nothing to wait on together."""
    from channels.exceptions import StopConsumer

    consumer.scope = scope
    consumer.channel_layer = None
    consumer.base_send = send
    try:
        while True:
            await dispatch(consumer, await receive())
            # Let the protocol handler run between messages, as Channels' loop does: moving a
            # burst into strawberry's queue in one go would starve it.
            await asyncio.sleep(0)
    except StopConsumer:
        pass


async def dispatch(consumer, message) -> None:
    """AsyncConsumer.dispatch, minus `aclose_old_connections()` before every message: that call
    hops to Daphne's one thread for synchronous code on every inbound message (connection_init,
    subscribe, complete...), so a reconnect storm queues behind it. postwire's consumer reaches
    the database only through `database_sync_to_async`, which closes stale connections itself,
    around each query, on that same thread."""
    from channels.consumer import get_handler_name

    handler = getattr(consumer, get_handler_name(message), None)
    if handler is None:
        raise ValueError(f"No handler for message type {message['type']}")
    await handler(message)
