"""The boundary: every use of another project's internals lives in this package.

One module per upstream project (daphne, autobahn, twisted, strawberry, channels); each opens
with the releases it was checked against and the names it uses, and has a probe for every
feature it offers. postwire's own code calls these modules and nothing behind them
(tests/api/compat/test_boundary.py walks the source and fails on a reach-in anywhere else).

What the modules offer is grouped into *fast paths* (FAST_PATHS below). Each has a public path
that is correct on any release; a fast path is used only when every probe it needs passes
(known release series, every name present, every copied or relied-on upstream function
unchanged: checks.py). A node logs one WARNING at start for each fast path it declined, and
exports `postwire_fast_path{component}` 1/0. POSTWIRE_FAST_PATHS turns fast paths off by hand:
`none`, or a comma list of names to leave out (`-sweeps,-keepalive`); default `all`.

Each fast path stays only while the benchmark shows it pays: docs/compat.md has the table.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("server.compat")

SETTING = "POSTWIRE_FAST_PATHS"


@dataclass(frozen=True)
class FastPath:
    name: str
    buys: str  # what it is for, in a phrase
    public_path: str  # what runs instead
    upstream: tuple[str, ...]  # the packages it reaches into
    probe: Callable[[], str | None]  # None when usable, else why not


def _probes(*names: str) -> Callable[[], str | None]:
    """A probe made of compat modules' probes (module:function), run in order."""

    def probe() -> str | None:
        import importlib

        for name in names:
            module, function = name.split(":")
            reason = getattr(importlib.import_module(f"server.compat.{module}"), function)()
            if reason is not None:
                return reason
        return None

    return probe


FAST_PATHS: dict[str, FastPath] = {
    path.name: path
    for path in (
        FastPath(
            "shared_execution",
            "each event executed once per subscription shape, not once per subscriber",
            "strawberry executes and sends per subscriber",
            ("strawberry-graphql", "graphql-core"),
            _probes("strawberry:probe_shared_execution"),
        ),
        FastPath(
            "direct_writes",
            "the hub writes pre-built frames to each socket (one send() when nothing is queued), "
            "and cuts off a reader holding too many unsent bytes",
            "the hub sends through each socket's ASGI send (no unsent-bytes limit: Daphne has no back-pressure)",
            ("daphne", "autobahn", "twisted"),
            _probes("daphne:probe_socket_of_send", "autobahn:probe_frames", "twisted:probe_buffers"),
        ),
        FastPath(
            "close_reasons",
            "close frames carry their reason (Daphne drops the reason of an ASGI close)",
            "ASGI websocket.close: the code arrives, the reason does not",
            ("daphne", "autobahn"),
            _probes("daphne:probe_socket_of_send", "autobahn:probe_close"),
        ),
        FastPath(
            "flood_limit",
            "the flood limit counts what Daphne has read from a socket but the application not taken",
            "the flood limit counts only what the consumer holds",
            ("daphne",),
            _probes("daphne:probe_socket_of_send", "daphne:probe_input_queue"),
        ),
        FastPath(
            "lean_sockets",
            "each idle socket keeps less: Daphne's input queue is an Inbox, autobahn's options live on "
            "the protocol class, the upgraded HTTP request, the parsed handshake, strawberry's unused queue "
            "and its finished init-timeout task are let go",
            "Daphne and autobahn keep their per-socket objects",
            ("daphne", "autobahn", "twisted"),
            _probes("daphne:probe_lean", "autobahn:probe_lean", "strawberry:probe_lean"),
        ),
        FastPath(
            "sweeps",
            "Daphne's periodic walks over every connection replaced by work on the connections that need it",
            "Daphne's own application_checker and timeout_checker",
            ("daphne",),
            _probes("daphne:probe_sweeps"),
        ),
        FastPath(
            "keepalive",
            "Daphne's keep-alive ping written like a hub frame, its pong taken before autobahn's parser",
            "autobahn's ping and pong machinery",
            ("daphne", "autobahn", "twisted"),
            _probes("daphne:probe_sweeps", "autobahn:probe_keepalive", "twisted:probe_buffers"),
        ),
        FastPath(
            "lean_consumer",
            "the consumer reads its socket in a plain loop, without a task per inbound message and "
            "without Channels' hop to the database thread before each one",
            "Channels' own consumer loop and dispatch",
            ("channels",),
            _probes("channels:probe_consumer_loop"),
        ),
        FastPath(
            "stop_listening",
            "a draining node closes Daphne's listening sockets, so a proxy's connect goes elsewhere",
            "a draining node refuses new handshakes (403)",
            ("twisted",),
            _probes("twisted:probe_listening"),
        ),
    )
}


def _turned_off() -> tuple[set[str], str | None]:
    """The names POSTWIRE_FAST_PATHS turns off, and a complaint about the setting if any."""
    value = os.environ.get(SETTING, "all").strip().lower()
    if value in ("", "all"):
        return set(), None
    if value == "none":
        return set(FAST_PATHS), None
    off, unknown = set(), []
    for item in value.split(","):
        name = item.strip().removeprefix("-")
        if name in FAST_PATHS:
            off.add(name)
        elif name:
            unknown.append(name)
    complaint = f"{SETTING} names unknown fast paths: {', '.join(unknown)}" if unknown else None
    return off, complaint


@functools.cache
def decision(name: str) -> str | None:
    """None when the fast path `name` is on; else why it is off (probed once per process)."""
    path = FAST_PATHS[name]
    off, _ = _turned_off()
    if name in off:
        return f"turned off by {SETTING}"
    try:
        return path.probe()
    except Exception as exc:  # a probe that breaks is a probe that failed
        return f"probe failed: {type(exc).__name__}: {exc}"


def on(name: str) -> bool:
    return decision(name) is None


def status() -> dict[str, str | None]:
    return {name: decision(name) for name in FAST_PATHS}


@functools.cache
def report() -> dict[str, str | None]:
    """Log, once per process, which fast paths are off and why (WARNING when a probe declined,
    INFO when the setting asked), and export postwire_fast_path{component}."""
    from server.realtime.metrics import FAST_PATH

    _, complaint = _turned_off()
    if complaint:
        log.warning(complaint)
    decisions = status()
    for name, reason in decisions.items():
        FAST_PATH.labels(component=name).set(0 if reason else 1)
        if reason is None:
            continue
        public = FAST_PATHS[name].public_path
        if reason.startswith("turned off by"):
            log.info("fast path %s is off (%s): %s", name, reason, public)
        else:
            log.warning("fast path %s is off: %s; instead, %s", name, reason, public)
    on_names = [name for name, reason in decisions.items() if reason is None]
    log.info("fast paths on: %s", ", ".join(on_names) or "none")
    return decisions
