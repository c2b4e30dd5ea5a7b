"""Direct delivery (each event executed once per shape, the hub writing every subscriber's
message) against the plain path (strawberry executes and sends per subscriber), byte for byte.

Four Daphne nodes of one stack get the same population of subscribers: the plain path
(POSTWIRE_DELIVERY=strawberry), direct delivery with its frames written to the sockets (fast
path direct_writes), direct delivery through each socket's ASGI send (that fast path turned
off: its public path), and a node that sees a Daphne release server.compat was never checked
against (every fast path into Daphne declines: public paths throughout, said at start). The
same publishes reach all four; every subscriber must receive exactly the same frames on each.
Clients connect to each node directly: the delivery engine is what is compared, not nginx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from pathlib import Path

import pytest
import websockets

from devstack.stack import Stack
from tests.stack.faults import report
from tests.support.client import POST_NOTIFY, GraphQLHttp, RawSocket
from tests.support.stacks import running_stack
from tests.support.users import create_user, staff_client

pytestmark = pytest.mark.stack

PLAIN, SHARED, ASGI, UNKNOWN = "ws-1", "ws-2", "ws-3", "ws-4"
DIRECT = (SHARED, ASGI, UNKNOWN)
RELEASES = Path(__file__).resolve().parents[1] / "support" / "releases"  # a sitecustomize that pretends
STALL_LIMIT = 32 * 1024  # POSTWIRE_WS_MAX_UNSENT_BYTES on the shared node
SEND_BUFFER = 16 * 1024  # and its kernel send buffer per socket: stalls show up in seconds


@pytest.fixture(scope="module")
def paths_stack(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("paths")
    with running_stack(
        run_dir,
        ws_nodes=4,
        api_nodes=1,
        node_env={
            PLAIN: {"POSTWIRE_DELIVERY": "strawberry"},
            SHARED: {
                "POSTWIRE_DELIVERY": "direct",
                "POSTWIRE_WS_MAX_UNSENT_BYTES": str(STALL_LIMIT),
                "POSTWIRE_WS_SEND_BUFFER_BYTES": str(SEND_BUFFER),
            },
            ASGI: {"POSTWIRE_DELIVERY": "direct", "POSTWIRE_FAST_PATHS": "-direct_writes"},
            UNKNOWN: {
                "POSTWIRE_DELIVERY": "direct",
                "PYTHONPATH": str(RELEASES),
                "POSTWIRE_TEST_RELEASES": "daphne=4.9.0",
            },
        },
    ) as running:
        yield running


def node_metric(stack: Stack, node: str, name: str) -> float:
    text = urllib.request.urlopen(f"{stack.node(node).base_url}/metrics", timeout=5).read().decode()
    values = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    ]
    return sum(values)


WITH_VIEWER = "subscription { postNotify { seq byViewer title } }"
ALIASED = """
subscription Aliased { n: postNotify { ...Head when: publishAt } other: __typename }
fragment Head on PostNotification { key: id seq t: title }
subscription Unused { postNotify { seq } }
"""
AFTER = "subscription Resume($from: Seq) { postNotify(after: $from) { seq title } }"
DRAFTS = "subscription { draftActivity { seq kind postId title byViewer } }"


def seqs_of(sock: RawSocket, op_id: str) -> list[int]:
    """The seqs an operation's data messages carried, in arrival order."""
    messages = (json.loads(f) for f in sock.frames())
    return [
        m["payload"]["data"]["postNotify"]["seq"]
        for m in messages
        if m.get("id") == op_id and m["type"] == "next" and "errors" not in m["payload"]
    ]


def by_operation(sock: RawSocket) -> list[tuple[str, list[str]]]:
    ops: dict[str, list[str]] = {}
    for frame in sock.frames():
        ops.setdefault(json.loads(frame).get("id"), []).append(frame)
    return sorted(ops.items())


async def population(url: str, staff_cookie: str, other_cookie: str, resume_from: int) -> dict[str, RawSocket]:
    """The same subscribers, in the same order, on one node. Names say what each one covers."""
    t, legacy = "graphql-transport-ws", "graphql-ws"
    sockets = {
        "transport": await RawSocket.open(url, t),
        "legacy": await RawSocket.open(url, legacy),
        "two-ops-one-socket": await RawSocket.open(url, t),
        "aliases-fragments-opname": await RawSocket.open(url, t),
        "legacy-aliases": await RawSocket.open(url, legacy),
        "variables-after-replay": await RawSocket.open(url, t),
        "legacy-after-replay": await RawSocket.open(url, legacy),
        "viewer-anonymous": await RawSocket.open(url, t),
        "viewer-staff": await RawSocket.open(url, t, cookie=staff_cookie),
        "viewer-other-staff": await RawSocket.open(url, t, cookie=other_cookie),
        "drafts-staff": await RawSocket.open(url, legacy, cookie=staff_cookie),
        "drafts-anonymous-refused": await RawSocket.open(url, t),
        "completes-midway": await RawSocket.open(url, t),
        "slow-reader": await RawSocket.open(url, t, read_delay=0.05),
    }
    await sockets["transport"].start("p1", POST_NOTIFY)
    await sockets["legacy"].start("p1", POST_NOTIFY)
    await sockets["two-ops-one-socket"].start("a", POST_NOTIFY)
    await sockets["two-ops-one-socket"].start("b", WITH_VIEWER)
    await sockets["aliases-fragments-opname"].start("x", ALIASED, operation_name="Aliased")
    await sockets["legacy-aliases"].start("x", ALIASED, operation_name="Aliased")
    await sockets["variables-after-replay"].start("r", AFTER, {"from": resume_from}, operation_name="Resume")
    await sockets["legacy-after-replay"].start("r", AFTER, {"from": resume_from}, operation_name="Resume")
    await sockets["viewer-anonymous"].start("v", WITH_VIEWER)
    await sockets["viewer-staff"].start("v", WITH_VIEWER)
    await sockets["viewer-other-staff"].start("v", WITH_VIEWER)
    await sockets["drafts-staff"].start("d", DRAFTS)
    await sockets["drafts-anonymous-refused"].start("d", DRAFTS)
    await sockets["completes-midway"].start("c", POST_NOTIFY)
    await sockets["slow-reader"].start("s", POST_NOTIFY)
    return sockets


@pytest.mark.fast_path("shared_execution", "direct_writes")
async def test_shared_and_plain_paths_send_the_same_bytes(paths_stack):
    staff = staff_client(paths_stack.http_url)
    other = GraphQLHttp(paths_stack.http_url)
    other.login(*create_user(paths_stack, username="other-staff", staff=True, perm=True))
    # History for the `after` subscribers to replay (published before they subscribe).
    for k in range(3):
        staff.publish(staff.create_post(f"history {k}")[0])
    seq_probe = await RawSocket.open(
        paths_stack.node(PLAIN).base_url.replace("http", "ws") + "/wsgraphql", "graphql-transport-ws"
    )
    await seq_probe.start("h", "subscription { postNotify(after: 0) { seq } }")
    history = [json.loads(f)["payload"]["data"]["postNotify"]["seq"] for f in await seq_probe.frames_for(3)]
    await seq_probe.close()
    resume_from = history[0]  # two stored events to replay, then live

    nodes = {}
    for name in (PLAIN, *DIRECT):
        url = paths_stack.node(name).base_url.replace("http", "ws") + "/wsgraphql"
        nodes[name] = await population(url, staff.cookie_header, other.cookie_header, resume_from)
    try:
        await asyncio.sleep(1.0)  # every subscription registered with its node's hub
        titles = [
            "plain ascii",
            'quotes " and \\ backslash',
            "unicode é ü 中文 🙂",
            "x" * 200,
            "</script><b>",
            "\u2028 line separator",
            "after complete",
            "last one",
        ]
        for i, title in enumerate(titles):
            if title == "after complete":
                for sockets in nodes.values():
                    await sockets["completes-midway"].complete("c")
                await asyncio.sleep(0.5)
            gid, _ = staff.create_post(title)
            assert staff.publish(gid)["data"]["publishPost"]["published"], title
            await asyncio.sleep(0.2 if i % 2 else 0.0)  # back-to-back publishes too
        await asyncio.sleep(2.0)

        # Per operation: how one socket interleaves its operations' frames is not specified (the
        # plain path's own order depends on set iteration), each operation's stream is.
        received = {
            name: {(who, op): frames for who, sock in sockets.items() for op, frames in by_operation(sock)}
            for name, sockets in nodes.items()
        }
        for direct in DIRECT:
            assert received[direct].keys() == received[PLAIN].keys()
            for who in received[PLAIN]:
                plain, shared = received[PLAIN][who], received[direct][who]
                assert plain, f"{who}: the plain path sent nothing, so the comparison would prove nothing"
                assert shared == plain, f"{who}: the paths differ ({direct})\nplain:  {plain}\nshared: {shared}"
        received = {name: {who: sock.frames() for who, sock in sockets.items()} for name, sockets in nodes.items()}

        # What the population covers, checked on the (identical) frames.
        r = received[PLAIN]
        assert len([f for f in r["transport"] if '"type":"next"' in f]) == len(titles)
        assert all('"type":"data"' in f for f in r["legacy"]) and len(r["legacy"]) == len(titles)
        assert len(r["two-ops-one-socket"]) == 2 * len(titles)
        assert len(r["variables-after-replay"]) == 2 + len(titles)  # exactly the replayed gap, then live
        # Same document, three viewers, on the shared node too: nobody sees another's result.
        for node in (PLAIN, *DIRECT):
            got = received[node]
            assert all('"byViewer":true' in f for f in got["viewer-staff"])  # the publisher
            assert all('"byViewer":false' in f for f in got["viewer-other-staff"] + got["viewer-anonymous"])
        assert '"errors"' in r["drafts-anonymous-refused"][0] and "staff only" in r["drafts-anonymous-refused"][0]
        assert sum('"kind":"CREATED"' in f for f in r["drafts-staff"]) == len(titles)
        assert len(r["completes-midway"]) == titles.index("after complete")  # nothing after its complete
        assert len(r["slow-reader"]) == len(titles)
        # And the direct nodes really took the direct path, one of them without direct writes;
        # the plain one did not.
        for node in DIRECT:
            assert node_metric(paths_stack, node, "postwire_shared_shapes") >= 5
        assert node_metric(paths_stack, PLAIN, "postwire_shared_shapes") == 0
        assert node_metric(paths_stack, SHARED, 'postwire_fast_path{component="direct_writes"}') == 1
        assert node_metric(paths_stack, ASGI, 'postwire_fast_path{component="direct_writes"}') == 0
    finally:
        for sockets in nodes.values():
            for sock in sockets.values():
                await sock.close()


def test_a_node_on_a_daphne_release_it_does_not_know_says_which_fast_paths_are_off(paths_stack):
    """Degrade, don't break: the node above that sees daphne 4.9.0 ran the public path (and sent
    the same bytes); at start it said, once per fast path, which one is off and why, and its
    metrics say the same."""
    from server import compat

    log = paths_stack.node(UNKNOWN).process.log_path.read_text()
    into_daphne = [name for name, path in compat.FAST_PATHS.items() if "daphne" in path.upstream]
    for name in into_daphne:
        lines = [line for line in log.splitlines() if f"fast path {name} is off" in line]
        assert len(lines) == 1 and "WARNING" in lines[0], (name, lines)
        assert "daphne 4.9.0 is not a release it was checked against (4.2.x)" in lines[0]
        assert node_metric(paths_stack, UNKNOWN, f'postwire_fast_path{{component="{name}"}}') == 0
    assert node_metric(paths_stack, UNKNOWN, 'postwire_fast_path{component="shared_execution"}') == 1
    other = paths_stack.node(SHARED).process.log_path.read_text()
    assert "is off" not in other and node_metric(paths_stack, SHARED, 'postwire_fast_path{component="sweeps"}') == 1


@pytest.mark.fast_path("direct_writes")
async def test_a_stalled_reader_is_cut_off_with_a_resume_point_and_others_keep_receiving(paths_stack):
    """Memory per socket is bounded by its unsent bytes: past the limit, the hub stops writing to
    it and its subscriptions end with an error naming the seq to resume after."""
    staff = staff_client(paths_stack.http_url)
    url = paths_stack.node(SHARED).base_url.replace("http", "ws") + "/wsgraphql"
    stalled = await RawSocket.open(url, "graphql-transport-ws", receive_buffer=4096)
    for k in range(40):  # 40 operations: each publish puts 40 frames on this socket
        await stalled.start(f"s{k}", POST_NOTIFY)
    healthy = await RawSocket.open(url, "graphql-transport-ws")
    await healthy.start("h", POST_NOTIFY)
    await asyncio.sleep(0.5)
    stalled.pause()
    cut_before = node_metric(paths_stack, SHARED, "postwire_slow_subscribers_total")
    try:
        published = 0
        while node_metric(paths_stack, SHARED, "postwire_slow_subscribers_total") < cut_before + 40:
            staff.publish(staff.create_post("z" * 200)[0])
            published += 1
            assert published < 200, "the stalled socket was never cut off"
        assert len(await healthy.frames_for(published, timeout=20)) == published
        stalled.resume()
        await asyncio.sleep(3)
        frames = [json.loads(f) for f in stalled.frames()]
        for k in range(40):
            mine = [f for f in frames if f.get("id") == f"s{k}"]
            nexts = [f for f in mine if f["type"] == "next" and "errors" not in f["payload"]]
            error, complete = mine[-2], mine[-1]
            assert complete["type"] == "complete"
            message = error["payload"]["errors"][0]["message"]
            last = nexts[-1]["payload"]["data"]["postNotify"]["seq"] if nexts else None
            assert "resubscribe with after=" + str(last) in message, (message, last)
            assert len(nexts) < published  # it really was cut off, not just slow
        # The healthy subscriber on the same node kept receiving throughout, and still does.
        staff.publish(staff.create_post("after the cut")[0])
        everything = [
            json.loads(f)["payload"]["data"]["postNotify"]["seq"]
            for f in await healthy.frames_for(published + 1, timeout=10)
        ]
        assert len(everything) == published + 1
        # Resuming where the error said loses nothing and repeats nothing: what each cut-off
        # subscription got, then its resumed replay, is every publication exactly once, in order.
        got = {k: seqs_of(stalled, f"s{k}") for k in range(40)}
        cut = [k for k in range(40) if got[k]]
        assert cut
        for k in cut:
            await stalled.start(f"r{k}", AFTER, {"from": got[k][-1]})
        async with asyncio.timeout(20):
            while not all(len(got[k]) + len(seqs_of(stalled, f"r{k}")) >= len(everything) for k in cut):
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        for k in cut:
            assert got[k] + seqs_of(stalled, f"r{k}") == everything, k
        report(
            "a stalled reader (40 subscriptions on one socket)",
            {
                "published": len(everything),
                "cut off": 40,
                "resumed with after": len(cut),
                "delivered per subscription": len(everything),
                "lost": 0,
                "duplicated": 0,
            },
        )
    finally:
        await stalled.close()
        await healthy.close()


@pytest.mark.fast_path("direct_writes", "close_reasons")
async def test_a_client_that_pings_without_reading_is_closed_not_buffered(paths_stack):
    """Pongs to a client that never reads would pile up on the server like frames do: past the
    same unsent-bytes limit the socket is closed (1008) instead of growing the node's memory."""
    url = paths_stack.node(SHARED).base_url.replace("http", "ws") + "/wsgraphql"
    closed_before = node_metric(paths_stack, SHARED, 'postwire_ws_closed_by_server_total{code="1008"}')
    sock = await RawSocket.open(url, "graphql-transport-ws", receive_buffer=4096)
    sock.pause()
    try:
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(1000):  # up to 20,000 pings
                for _ in range(20):
                    await sock.ws.send('{"type": "ping"}')
                await asyncio.sleep(0.02)  # 1,000 a second: under the flood limit even on a busy machine
        sock.resume()
        async with asyncio.timeout(30):
            await sock.ws.wait_closed()
        assert len(sock.frames()) < 20_000  # cut off, not buffered to the end
        # The close frame sits behind the pongs the client never read: it may not get through
        # before the server gives up on the closing handshake and drops the connection.
        if sock.ws.close_code != 1006:
            assert (sock.ws.close_code, sock.ws.close_reason) == (1008, "Too slow: pings are not being read")
        assert node_metric(paths_stack, SHARED, 'postwire_ws_closed_by_server_total{code="1008"}') == closed_before + 1
        log = paths_stack.node(SHARED).process.log_path.read_text()
        assert "1008 Too slow: pings are not being read" in log
    finally:
        await sock.close()
