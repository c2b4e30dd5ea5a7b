"""The fan-out of the Strawberry + Django Channels tutorial postwire started from: a baseline the
benchmark runs in the WebSocket nodes' place (`python -m bench --fanout tutorial`), never part of
the product. Every WebSocket joins the channel-layer group itself (O(subscribers) Redis work per
publish) and reads the post from the database for every message (O(subscribers) queries per
publish)."""
