"""Shared steps of the stack tests: open subscribers through nginx, make sure they are live,
publish, and check that each subscriber got exactly what it should."""

from __future__ import annotations

import asyncio
import base64

from tests.support.client import POST_NOTIFY, GraphQLHttp, Socket

QUIET_SECONDS = 1.0  # how long "nothing else arrived" is watched for


def decode_gid(gid: str) -> tuple[str, str]:
    type_name, _, node_id = base64.b64decode(gid).decode().partition(":")
    return type_name, node_id


class Subscriber:
    def __init__(self, socket: Socket, op_id: str, node: str):
        self.socket, self.op_id, self.node = socket, op_id, node

    async def next(self, timeout: float = 10.0):
        return await self.socket.receive(self.op_id, timeout)

    async def drain(self) -> list:
        got = []
        while True:
            try:
                got.append(await self.next(QUIET_SECONDS))
            except TimeoutError:
                return got


async def open_subscribers(
    url: str, count: int, *, protocols=("graphql-transport-ws", "graphql-ws"), query: str = POST_NOTIFY
) -> list[Subscriber]:
    subscribers = []
    for i in range(count):
        socket = await Socket.open(url, protocol=protocols[i % len(protocols)])
        node = await socket.node()
        subscribers.append(Subscriber(socket, await socket.start(query), node))
    return subscribers


async def until_live(subscribers: list[Subscriber], publisher: GraphQLHttp, attempts: int = 10) -> None:
    """A subscription has no acknowledgement: publish warm-up posts until every subscriber has
    received one, then drain, so later assertions count only what they cause."""
    waiting = list(subscribers)
    for _ in range(attempts):
        gid, _ = publisher.create_post("warm-up")
        publisher.publish(gid)
        results = await asyncio.gather(*(s.next(3) for s in waiting), return_exceptions=True)
        waiting = [s for s, r in zip(waiting, results, strict=True) if isinstance(r, BaseException)]
        if not waiting:
            break
    assert not waiting, f"{len(waiting)} subscribers never went live"
    await asyncio.gather(*(s.drain() for s in subscribers))


async def publish_and_expect(subscribers: list[Subscriber], publisher: GraphQLHttp, title: str | None = None) -> dict:
    """Publish one post; every subscriber gets it exactly once, with the right fields."""
    gid, title = publisher.create_post(title)
    result = publisher.publish(gid)
    post = result["data"]["publishPost"]
    assert post["__typename"] == "Post" and post["published"], result

    received = await asyncio.gather(*(s.next(10) for s in subscribers))
    for kind, payload in received:
        assert kind == "next", (kind, payload)
        notification = payload["data"]["postNotify"]
        assert notification["title"] == title
        assert decode_gid(notification["id"]) == ("PostNotification", decode_gid(gid)[1])
        assert notification["publishAt"] == post["publishedAt"]
    # Exactly once: nothing else follows.
    extras = await asyncio.gather(*(s.drain() for s in subscribers))
    assert all(not e for e in extras), extras
    return {"gid": gid, "title": title, "seq": received[0][1]["data"]["postNotify"]["seq"]}


async def close_all(subscribers: list[Subscriber]) -> None:
    await asyncio.gather(*(s.socket.close() for s in subscribers), return_exceptions=True)


async def sockets_follow_connection_counts(url: str, nodes: set[str]) -> dict:
    """nginx balances WebSockets by how many each node holds (least_conn): two sockets per node
    spread evenly; with one node's closed, the next two both go
    to that node, which now holds the fewest. (Random or round-robin would not: with 3 nodes,
    both land on it 1 time in 9.) Returns what was seen, for the report."""

    async def open_one() -> tuple[Socket, str]:
        socket = await Socket.open(url)
        return socket, await socket.node()

    held = [await open_one() for _ in range(2 * len(nodes))]
    try:
        counts = {node: sum(1 for _, n in held if n == node) for node in nodes}
        assert counts == dict.fromkeys(nodes, 2), f"sockets per node: {counts}"
        emptied = held[0][1]
        for socket, node in held:
            if node == emptied:
                await socket.close()
        held = [(s, n) for s, n in held if n != emptied]
        await asyncio.sleep(1.0)  # nginx sees the closes
        fresh = [await open_one() for _ in range(2)]
        held += fresh
        assert [n for _, n in fresh] == [emptied, emptied], f"after emptying {emptied}: {[n for _, n in fresh]}"
        return {"spread": counts, "emptied": emptied, "next two": [n for _, n in fresh]}
    finally:
        for socket, _ in held:
            await socket.close()
