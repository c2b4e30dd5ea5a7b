"""server.realtime.inbox: the one-reader queue of Daphne's input and of the consumer's handler."""

import asyncio
import contextlib

from server.realtime.inbox import Inbox


async def test_the_inbox_hands_messages_over_in_order_and_survives_a_cancelled_get():
    inbox = Inbox()
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert inbox.qsize() == 2 and await inbox.get() == "a"
    waiting = asyncio.create_task(inbox.get())  # "b" is there: no wait
    assert await waiting == "b" and inbox.qsize() == 0
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing to hand over yet
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    inbox.put_nowait("c")  # after a cancelled get, nothing is lost
    later = asyncio.create_task(inbox.get())
    inbox.put_nowait("d")
    assert await later == "c" and await inbox.get() == "d"


async def test_items_shows_what_waits_oldest_first():
    inbox = Inbox()
    assert inbox.items() == []
    inbox.put_nowait({"text": "a"})
    inbox.put_nowait({"text": "bb"})
    assert inbox.items() == [{"text": "a"}, {"text": "bb"}]
    await inbox.get()
    assert inbox.items() == [{"text": "bb"}]
