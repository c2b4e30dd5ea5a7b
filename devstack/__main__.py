"""`bin/devstack`: run postwire on loopback without Docker; Ctrl-C stops everything."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from devstack.proc import StartupError
from devstack.stack import STAFF_PASSWORD, STAFF_USERNAME, Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    parser.add_argument("--ws-nodes", type=int, default=3, help="Daphne processes (default 3)")
    parser.add_argument("--api-nodes", type=int, default=1, help="gunicorn instances (default 1)")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("POSTWIRE_HTTP_PORT", 8080)), help="nginx port (default 8080)"
    )
    parser.add_argument("--run-dir", help="logs and data (default: a new temporary directory)")
    parser.add_argument("--channel-layer", choices=["core", "pubsub"], help="CHANNEL_LAYER for the nodes")
    parser.add_argument("--delivery", choices=["direct", "strawberry"], help="POSTWIRE_DELIVERY for the nodes")
    parser.add_argument("--fast-paths", help="POSTWIRE_FAST_PATHS for the nodes (all, none, or -name,-name)")
    args = parser.parse_args(argv)

    extra = {}
    if args.channel_layer:
        extra["CHANNEL_LAYER"] = args.channel_layer
    if args.delivery:
        extra["POSTWIRE_DELIVERY"] = args.delivery
    if args.fast_paths:
        extra["POSTWIRE_FAST_PATHS"] = args.fast_paths
    stack = Stack(
        ws_nodes=args.ws_nodes,
        api_nodes=args.api_nodes,
        port=args.port,
        run_dir=args.run_dir,
        database_url=os.environ.get("DATABASE_URL"),
        redis_url=os.environ.get("REDIS_URL"),
        staff_username=os.environ.get("POSTWIRE_BOOTSTRAP_USERNAME", STAFF_USERNAME),
        staff_password=os.environ.get("POSTWIRE_BOOTSTRAP_PASSWORD", STAFF_PASSWORD),
        extra_env=extra,
    )

    # SIGTERM stops everything as Ctrl-C does (default_int_handler raises KeyboardInterrupt). SIGINT
    # is set too for a start in the background (`bin/devstack &`), where it arrives ignored.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack.start()
    except StartupError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stack.stop()
        return 130
    print(
        f"""
postwire is up (logs in {stack.run_dir}):
  GraphiQL      {stack.graphql_url}
  subscriptions {stack.ws_url}
  admin         {stack.http_url}/admin/   (staff user: {stack.staff_username} / {stack.staff_password})
  database      {stack.database_url}
  redis         {stack.redis_url}
  nodes         {", ".join(f"{n.name}=:{n.port}" for n in stack.api + stack.ws)}
Ctrl-C stops everything.""",
        flush=True,
    )
    try:
        while True:
            dead = [n.name for n in stack.api + stack.ws if not n.process.alive()]
            if dead:
                print(f"devstack: node(s) exited: {', '.join(dead)}; see their logs", file=sys.stderr)
            time.sleep(2 if not dead else 30)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        # A second Ctrl-C or SIGTERM must not cut the shutdown short and leave processes behind.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
