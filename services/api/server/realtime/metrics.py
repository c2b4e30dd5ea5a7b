"""Prometheus metrics of the real-time path. Each Daphne process exports its own at /metrics."""

from prometheus_client import Counter, Gauge, Histogram

LIVE_SUBSCRIPTIONS = Gauge(
    "postwire_live_subscriptions", "Subscriptions open on this node", multiprocess_mode="livesum"
)
NOTIFICATIONS_DELIVERED = Counter(
    "postwire_notifications_delivered", "Notifications handed to subscribers on this node", ["subscription"]
)
HUB_MESSAGES = Counter("postwire_hub_messages", "Channel-layer messages received by this node's hub")
HUB_DUPLICATES = Counter("postwire_hub_duplicates", "Events the hub saw twice and delivered once")
HUB_CAUGHT_UP = Counter("postwire_hub_caught_up", "Events the hub recovered from the database")
HUB_RECONNECTS = Counter("postwire_hub_reconnects", "Times the hub lost the channel layer and retried")
HUB_REJOINS = Counter("postwire_hub_rejoins", "Periodic re-joins of the channel-layer group")
BROADCASTS = Counter("postwire_broadcasts", "Events sent to the channel layer after commit", ["outcome"])
SLOW_SUBSCRIBERS = Counter(
    "postwire_slow_subscribers", "Subscriptions cut off for falling behind (told to resubscribe with after)"
)
SHARED_SHAPES = Gauge(
    "postwire_shared_shapes",
    "Distinct subscriptions (document, variables, viewer if it matters) executed once per event and "
    "written by the hub on this node",
    multiprocess_mode="livesum",
)
FAST_PATH = Gauge(
    "postwire_fast_path",
    "1 if this node uses the fast path (a reach-in into another project, server.compat), 0 if it runs "
    "the public path instead",
    ["component"],
    multiprocess_mode="max",
)
WS_CLOSED_BY_SERVER = Counter(
    "postwire_ws_closed_by_server",
    "WebSockets this node closed itself, by close code (4400 invalid message, 4408 no connection_init, "
    "1008 flooding or not reading, ...)",
    ["code"],
)

# Latency, observed once per event (not per subscriber): cheap on the hot path.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_SECONDS = Histogram(
    "postwire_delivery_seconds",
    "From this node's hub receiving an event to the last of its frames written on this node",
    buckets=_LATENCY_BUCKETS,
)
BROADCAST_SECONDS = Histogram(
    "postwire_broadcast_seconds",
    "From a committed publish's send being scheduled to the channel layer having taken it",
    buckets=_LATENCY_BUCKETS,
)
