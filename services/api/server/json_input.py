"""JSON from clients, over HTTP and WebSocket alike.

`json.loads` raises RecursionError on deeply nested arrays (about 100,000 `[`), which neither
Django nor strawberry expects: over HTTP it became a 500 page, over a WebSocket a dead protocol
task. Reported as what it is for a client, invalid JSON."""

import json


def loads(data: str | bytes) -> object:
    try:
        return json.loads(data)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
