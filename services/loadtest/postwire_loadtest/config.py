"""What one run is asked to do. Built by cli.py from flags and environment variables; everything
downstream reads this object only, so the same run can be driven from Python (tests, bench)."""

from __future__ import annotations

import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOL_CHOICES = (TRANSPORT_WS, LEGACY_WS, "mixed")

# One load-generator process holds at most this many sockets: the hard open-file limit is
# 20,000 per process here, and a few hundred descriptors go to Python, pipes and HTTP.
DEFAULT_MAX_PER_WORKER = 9000


def parse_duration_ms(text: str | float | int) -> float:
    """'500ms', '1.5s', '2m', or a bare number (milliseconds) -> milliseconds."""
    if isinstance(text, (int, float)):
        return float(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|m)?\s*", text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (try 500ms, 1.5s, 2m)")
    value, unit = float(match.group(1)), match.group(2) or "ms"
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_seconds(text: str | float | int) -> float:
    """'30', '30s', '2m', '500ms' -> seconds (a bare number is seconds here)."""
    if isinstance(text, (int, float)):
        return float(text)
    if re.fullmatch(r"\s*[0-9]*\.?[0-9]+\s*", text):
        return float(text)
    return parse_duration_ms(text) / 1000.0


def derive_urls(base: str, graphql_url: str | None, ws_url: str | None) -> tuple[str, str, str]:
    """From a base like http://localhost:8080 derive /graphql and ws(s)://.../wsgraphql."""
    parts = urlsplit(base if "://" in base else f"http://{base}")
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"--url must be http(s)://host[:port], not {base!r}")
    root = parts.path.rstrip("/")
    http_base = urlunsplit((parts.scheme, parts.netloc, root, "", ""))
    graphql = graphql_url or f"{http_base}/graphql"
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    ws = ws_url or urlunsplit((ws_scheme, parts.netloc, f"{root}/wsgraphql", "", ""))
    return http_base, graphql, ws


def new_run_id() -> str:
    return time.strftime("%m%d%H%M%S") + secrets.token_hex(2)


@dataclass
class Config:
    url: str = "http://127.0.0.1:8080"
    graphql_url: str = ""
    ws_url: str = ""
    username: str = "admin"
    password: str = "postwire-admin"

    # Subscribers
    subscribers: int = 100
    protocol: str = TRANSPORT_WS
    ramp_rate: float = 500.0  # new sockets per second, over all workers
    connect_timeout: float = 15.0
    workers: int = 0  # 0: ceil(subscribers / max_per_worker)
    max_per_worker: int = DEFAULT_MAX_PER_WORKER
    source_addresses: list[str] | None = None  # None: automatic (127.0.0.x when the target is loopback)

    # Publishes (open loop)
    publishes: int = 0  # 0: duration * rate
    rate: float = 1.0  # publishes per second
    duration: float = 30.0  # seconds of publishing, when publishes is 0
    publish_threads: int = 32

    # Phases
    warmup: str = "publish"  # publish | settle | none
    warmup_timeout: float = 30.0
    settle: float = 5.0
    idle: float = 0.0  # seconds of nothing between warm-up and publishing (what idle sockets cost)
    drain: float = 10.0  # after the last publish; also the delivery deadline of every publish
    timeout: float = 0.0  # whole run; 0: computed from the others

    # Objectives (None: not checked)
    min_delivery: float | None = None
    max_p99_ms: float | None = None
    max_duplicates: int | None = None

    # Output
    out_dir: Path | None = None
    run_id: str = field(default_factory=new_run_id)
    progress: str = "auto"  # auto | rich | plain | none
    plot: bool = True
    save_receipts: bool = False

    # Test hook: the tool itself drops K subscribers just before publish J+1 is sent.
    drop_subscribers: int = 0
    drop_after_publish: int | None = None

    def __post_init__(self) -> None:
        self.url, self.graphql_url, self.ws_url = derive_urls(self.url, self.graphql_url or None, self.ws_url or None)
        if self.protocol not in PROTOCOL_CHOICES:
            raise ValueError(f"protocol must be one of {PROTOCOL_CHOICES}")
        if self.warmup not in ("publish", "settle", "none"):
            raise ValueError("warmup must be publish, settle or none")
        if self.subscribers < 1:
            raise ValueError("subscribers must be at least 1")
        if self.rate <= 0 or self.ramp_rate <= 0:
            raise ValueError("rates must be positive")
        if self.idle < 0:
            raise ValueError("idle must not be negative")
        if not self.publishes:
            self.publishes = max(1, math.ceil(self.duration * self.rate))
        if self.drop_subscribers:
            if self.drop_after_publish is None or not 1 <= self.drop_after_publish < self.publishes:
                raise ValueError("--drop-subscribers needs --drop-after-publish J with 1 <= J < publishes")
            if self.drop_subscribers >= self.subscribers:
                raise ValueError("--drop-subscribers must leave at least one subscriber")
        if not self.workers:
            self.workers = max(1, math.ceil(self.subscribers / self.max_per_worker))
        self.workers = min(self.workers, self.subscribers)
        if math.ceil(self.subscribers / self.workers) > 19_000:
            raise ValueError("more than 19,000 sockets per worker cannot fit the 20,000 open-file limit")
        if not self.timeout:
            self.timeout = self.expected_seconds() + 120.0
        if self.out_dir is None:
            self.out_dir = Path("loadtest-results") / self.run_id
        self.out_dir = Path(self.out_dir)

    @property
    def title_prefix(self) -> str:
        """Every post this run publishes is titled <prefix><n> (measured) or <prefix>w<k> (warm-up)."""
        return f"lt-{self.run_id}-"

    def protocol_for(self, index: int) -> str:
        if self.protocol == "mixed":
            return (TRANSPORT_WS, LEGACY_WS)[index % 2]
        return self.protocol

    def expected_seconds(self) -> float:
        ramp = self.subscribers / self.ramp_rate
        warm = {"publish": self.warmup_timeout, "settle": self.settle, "none": 0.0}[self.warmup]
        return ramp + warm + self.idle + self.publishes / self.rate + self.drain

    def public_dict(self) -> dict:
        """The configuration as recorded in results (never the password)."""
        data = asdict(self)
        data["password"] = "***"
        data["out_dir"] = str(self.out_dir)
        return data
