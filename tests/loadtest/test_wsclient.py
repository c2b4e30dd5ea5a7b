"""The load generator's WebSocket client, frame by frame (no server: bytes in, callbacks out).
Its behaviour against real servers is covered by tests/loadtest/test_loadtest.py."""

import asyncio
import base64
import hashlib

import pytest

from postwire_loadtest.wsclient import ClientProtocol, HandshakeRefused, client_frame


class Transport:
    def __init__(self):
        self.written = []
        self.closed = self.aborted = False

    def write(self, data):
        self.written.append(data)

    def is_closing(self):
        return self.closed or self.aborted

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    head = bytes(((0x80 if fin else 0) | opcode,))
    if n < 126:
        head += bytes((n,))
    elif n < 65536:
        head += bytes((126,)) + n.to_bytes(2, "big")
    else:
        head += bytes((127,)) + n.to_bytes(8, "big")
    return head + payload


def unmask(frame: bytes) -> tuple[int, bytes]:
    n, at = frame[1] & 0x7F, 2
    if n == 126:
        n, at = int.from_bytes(frame[2:4], "big"), 4
    key, body = frame[at : at + 4], frame[at + 4 : at + 4 + n]
    return frame[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


def accept_for(request: bytes, protocol="graphql-transport-ws") -> bytes:
    key = next(line.split(b": ")[1] for line in request.split(b"\r\n") if line.startswith(b"Sec-WebSocket-Key"))
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\nSec-WebSocket-Protocol: " + protocol.encode() + b"\r\n\r\n"
    )


async def opened_client():
    texts, closes = [], []
    client = ClientProtocol("ws://127.0.0.1:8080/wsgraphql", "graphql-transport-ws", texts.append, closes.append)
    transport = Transport()
    client.connection_made(transport)
    assert transport.written[0].startswith(b"GET /wsgraphql HTTP/1.1\r\n")
    return client, transport, texts, closes


async def test_messages_split_and_joined_anyhow_arrive_whole_and_in_order():
    client, transport, texts, _ = await opened_client()
    stream = (
        accept_for(transport.written[0])
        + server_frame(1, b'{"a":1}')
        + server_frame(1, ("é" * 100).encode())
        + server_frame(1, b"x" * 70000)
        + server_frame(1, b"frag", fin=False)
        + server_frame(0, b"ment")
    )
    for i in range(0, len(stream), 7):  # the worst case: 7 bytes per read
        client.data_received(stream[i : i + 7])
    assert await client.opened == "graphql-transport-ws"
    assert texts == [b'{"a":1}', ("é" * 100).encode(), b"x" * 70000, b"fragment"]


async def test_whole_frames_in_one_read_take_the_fast_path_and_others_do_not():
    client, transport, texts, _ = await opened_client()
    client.data_received(accept_for(transport.written[0]))
    client.data_received(server_frame(1, b"short"))
    client.data_received(server_frame(1, b"m" * 300))
    client.data_received(server_frame(1, b"two") + server_frame(1, b"frames"))
    client.data_received(server_frame(1, b"half")[:3])
    client.data_received(server_frame(1, b"half")[3:])
    assert texts == [b"short", b"m" * 300, b"two", b"frames", b"half"]


async def test_ping_gets_a_masked_pong_with_its_payload_and_close_is_answered():
    client, transport, texts, closes = await opened_client()
    client.data_received(accept_for(transport.written[0]) + server_frame(9, b"beat"))
    assert unmask(transport.written[-1]) == (10, b"beat")
    client.data_received(server_frame(8, (4400).to_bytes(2, "big") + b"bad"))
    assert unmask(transport.written[-1]) == (8, (4400).to_bytes(2, "big"))
    assert transport.closed and client.close_code == 4400
    client.connection_lost(None)
    assert closes == [4400]


async def test_sent_text_is_masked():
    client, transport, _, _ = await opened_client()
    client.data_received(accept_for(transport.written[0]))
    client.send_text('{"type":"connection_init"}')
    assert unmask(transport.written[-1]) == (1, b'{"type":"connection_init"}')
    assert unmask(client_frame(1, b"y" * 300)) == (1, b"y" * 300)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", HandshakeRefused),
        (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: wrong\r\n\r\n", Exception),
    ],
)
async def test_a_refused_or_forged_handshake_fails_the_connect(response, error):
    client, transport, _, _ = await opened_client()
    client.data_received(response)
    with pytest.raises(error):
        await asyncio.wait_for(client.opened, 1)
    assert transport.aborted


async def test_a_masked_server_frame_is_a_protocol_error():
    client, transport, texts, _ = await opened_client()
    client.data_received(accept_for(transport.written[0]))
    client.data_received(client_frame(1, b"masked"))
    assert transport.aborted and texts == []
