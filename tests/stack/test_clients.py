"""Clients no one here wrote subscribe through nginx and receive the notification:
the reference graphql-ws client (npm) and Python's gql, with both WebSocket protocols."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from tests.stack.fanout import decode_gid

pytestmark = pytest.mark.stack

NODE_CLIENT = Path(__file__).parent / "clients"


async def receive_through(queue: asyncio.Queue, staff, attempts: int = 10) -> None:
    """Warm up (publish until the client hears anything), then one publish must arrive intact."""
    for _ in range(attempts):
        gid, _ = staff.create_post("warm-up")
        staff.publish(gid)
        try:
            await asyncio.wait_for(queue.get(), 3)
            break
        except TimeoutError:
            continue
    else:
        pytest.fail("the client never received a notification")
    while not queue.empty():
        queue.get_nowait()
    gid, title = staff.create_post()
    published = staff.publish(gid)["data"]["publishPost"]
    while True:
        notification = await asyncio.wait_for(queue.get(), 10)
        if notification["title"] != "warm-up":
            break
    assert notification["title"] == title
    assert decode_gid(notification["id"])[1] == decode_gid(gid)[1]
    assert notification["publishAt"] == published["publishedAt"]


async def test_reference_graphql_ws_client_from_npm(stack, staff):
    node = shutil.which("node")
    assert node, "node is required for the reference graphql-ws client (apt-get install nodejs npm)"
    assert (NODE_CLIENT / "node_modules" / "graphql-ws").is_dir(), f"run `npm ci` in {NODE_CLIENT} (bin/test does this)"
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_CLIENT / "subscribe.mjs"),
        stack.ws_url,
        "100",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    queue: asyncio.Queue = asyncio.Queue()

    async def pump():
        async for line in process.stdout:
            await queue.put(json.loads(line)["data"]["postNotify"])

    pumping = asyncio.create_task(pump())
    try:
        await receive_through(queue, staff)
    finally:
        process.terminate()
        await process.wait()
        pumping.cancel()
    assert process.returncode in (0, -15), (await process.stderr.read()).decode()


@pytest.mark.parametrize(
    "protocol", [WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL, WebsocketsTransport.APOLLO_SUBPROTOCOL]
)
async def test_python_gql_client(stack, staff, protocol):
    transport = WebsocketsTransport(url=stack.ws_url, subprotocols=[protocol])
    queue: asyncio.Queue = asyncio.Queue()

    async def listen():
        async with Client(transport=transport) as session:
            async for result in session.subscribe(gql("subscription { postNotify { id title publishAt seq } }")):
                await queue.put(result["postNotify"])

    listening = asyncio.create_task(listen())
    try:
        await receive_through(queue, staff)
        assert transport.subprotocol == protocol
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
