"""The two GraphQL-over-WebSocket subprotocols, reduced to what a subscriber needs.

graphql-transport-ws: connection_init/ack, subscribe/next/error/complete, ping/pong.
graphql-ws (legacy):  connection_init/ack/ka, start/data/error/complete/stop.
Incoming messages are normalised to the modern names so the rest of the tool sees one protocol.
"""

from __future__ import annotations

import json

from postwire_loadtest.config import TRANSPORT_WS

NODE_OP = "node"
POSTS_OP = "posts"

CONNECTION_INIT = json.dumps({"type": "connection_init", "payload": {}})
PONG = json.dumps({"type": "pong"})


def subscribe(protocol: str, op_id: str, query: str) -> str:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    return json.dumps({"type": kind, "id": op_id, "payload": {"query": query, "variables": {}}})


_NORMALISE = {"data": "next", "ka": "keepalive", "connection_error": "error"}


def kind_of(message: dict) -> str:
    """next | error | complete | connection_ack | ping | pong | keepalive | ..."""
    kind = message.get("type", "")
    return _NORMALISE.get(kind, kind)
