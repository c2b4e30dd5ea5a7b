"""`postwire-loadtest`: fan-out load test of postwire's GraphQL subscriptions.

Every flag can also be set from the environment (for a Kubernetes Job): --foo-bar reads
LOADTEST_FOO_BAR; the target and the staff user also read POSTWIRE_URL, POSTWIRE_WS_URL,
POSTWIRE_GRAPHQL_URL, POSTWIRE_USERNAME and POSTWIRE_PASSWORD. Flags win over the environment.

Exit status: 0 every stated objective met; 1 an objective missed; 2 bad usage;
3 the run itself failed (no login, no subscriber connected, timeout).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from postwire_loadtest.config import PROTOCOL_CHOICES, Config, parse_duration_ms, parse_seconds

EXIT_OK, EXIT_OBJECTIVE, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3

# Flags whose environment variable is not LOADTEST_<FLAG>.
ENV_ALIASES = {
    "url": ["POSTWIRE_URL"],
    "ws_url": ["POSTWIRE_WS_URL"],
    "graphql_url": ["POSTWIRE_GRAPHQL_URL"],
    "username": ["POSTWIRE_USERNAME"],
    "password": ["POSTWIRE_PASSWORD"],
}


def _env(dest: str) -> str | None:
    for name in [f"LOADTEST_{dest.upper()}", *ENV_ALIASES.get(dest, [])]:
        if os.environ.get(name):
            return os.environ[name]
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="postwire-loadtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    t = p.add_argument_group("target")
    t.add_argument("--url", default="http://127.0.0.1:8080", help="postwire's nginx (default %(default)s)")
    t.add_argument("--ws-url", default="", help="subscriptions URL (default: <url>/wsgraphql, ws or wss)")
    t.add_argument("--graphql-url", default="", help="HTTP GraphQL URL (default: <url>/graphql)")
    t.add_argument("--username", default="admin", help="staff user that publishes (default %(default)s)")
    t.add_argument("--password", default="postwire-admin", help="its password (prefer the env variable)")
    t.add_argument("--password-file", default="", help="read the password from this file (a mounted Secret)")

    s = p.add_argument_group("subscribers")
    s.add_argument("-n", "--subscribers", type=int, default=100, help="N subscriptions (default %(default)s)")
    s.add_argument(
        "--protocol",
        choices=PROTOCOL_CHOICES,
        default="graphql-transport-ws",
        help="subprotocol; mixed alternates both (default %(default)s)",
    )
    s.add_argument("--ramp-rate", type=float, default=500.0, help="new sockets per second (default %(default)s)")
    s.add_argument("--connect-timeout", type=parse_seconds, default=15.0, help="per socket, to connection_ack")
    s.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes (default: one per 9,000 sockets; 20,000 fds per process)",
    )
    s.add_argument(
        "--source-addresses",
        default="",
        help="client source addresses, e.g. 127.0.0.2-127.0.0.60 (default: 127.0.0.2-65 when "
        "the target is loopback, else the kernel's choice); 'none' disables",
    )

    q = p.add_argument_group("publishing (open loop)")
    q.add_argument("-m", "--publishes", type=int, default=0, help="M posts (default: duration x rate)")
    q.add_argument("--rate", type=float, default=1.0, help="publishes per second (default %(default)s)")
    q.add_argument(
        "--duration",
        type=parse_seconds,
        default=30.0,
        help="seconds of publishing when --publishes is not given (default %(default)s)",
    )
    q.add_argument("--publish-threads", type=int, default=32, help="concurrent publish requests at most")

    ph = p.add_argument_group("phases")
    ph.add_argument(
        "--warmup",
        choices=["publish", "settle", "none"],
        default="publish",
        help="publish: warm-up posts until every subscriber got one (default); settle: wait",
    )
    ph.add_argument("--warmup-timeout", type=parse_seconds, default=30.0, help="give up warming up after this")
    ph.add_argument("--settle", type=parse_seconds, default=5.0, help="seconds to wait with --warmup settle")
    ph.add_argument(
        "--idle",
        type=parse_seconds,
        default=0.0,
        help="after warm-up, hold every subscriber idle this long before publishing (phase marks "
        "idle_start / idle_end: what idle sockets cost a server, e.g. one ping interval)",
    )
    ph.add_argument(
        "--drain",
        type=parse_seconds,
        default=10.0,
        help="wait this long after the last publish; also each publish's delivery deadline",
    )
    ph.add_argument(
        "--timeout",
        type=parse_seconds,
        default=0.0,
        help="hard limit for the whole run (default: the phases' sum + 120 s)",
    )

    o = p.add_argument_group("objectives (exit 1 when missed)")
    o.add_argument("--min-delivery", type=float, default=None, help="e.g. 1.0: every expected delivery")
    o.add_argument("--max-p99", type=parse_duration_ms, default=None, help="e.g. 500ms or 1.5s")
    o.add_argument("--max-duplicates", type=int, default=None, help="e.g. 0")

    out = p.add_argument_group("output")
    out.add_argument("--out", default="", help="results directory (default: loadtest-results/<run-id>)")
    out.add_argument("--run-id", default="", help="names the run and its post titles lt-<run-id>-<n>")
    out.add_argument("--progress", choices=["auto", "rich", "plain", "none"], default="auto")
    out.add_argument("--no-plot", action="store_true", help="skip the PNG")
    out.add_argument("--save-receipts", action="store_true", help="also write receipts.csv.gz")
    out.add_argument("--quiet", action="store_true", help="do not print the summary")

    h = p.add_argument_group("test hooks")
    h.add_argument("--drop-subscribers", type=int, default=0, help="abort K subscribers mid-run ...")
    h.add_argument("--drop-after-publish", type=int, default=None, help="... just before publish J+1 is sent")

    # Environment variables become defaults, so flags still win.
    for action in p._actions:
        if action.dest in ("help",) or not action.option_strings:
            continue
        value = _env(action.dest)
        if value is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            action.default = value.lower() in ("1", "true", "yes", "on")
        else:
            action.default = action.type(value) if action.type else value
    return p


def config_from_args(args: argparse.Namespace) -> Config:
    password = args.password
    if args.password_file:
        password = Path(args.password_file).read_text().strip()
    sources = None
    if args.source_addresses == "none":
        sources = []
    elif args.source_addresses:
        from postwire_loadtest.netutil import parse_source_addresses

        sources = parse_source_addresses(args.source_addresses)
    kwargs = dict(
        url=args.url,
        graphql_url=args.graphql_url,
        ws_url=args.ws_url,
        username=args.username,
        password=password,
        subscribers=args.subscribers,
        protocol=args.protocol,
        ramp_rate=args.ramp_rate,
        connect_timeout=args.connect_timeout,
        workers=args.workers,
        source_addresses=sources,
        publishes=args.publishes,
        rate=args.rate,
        duration=args.duration,
        publish_threads=args.publish_threads,
        warmup=args.warmup,
        warmup_timeout=args.warmup_timeout,
        settle=args.settle,
        idle=args.idle,
        drain=args.drain,
        timeout=args.timeout,
        min_delivery=args.min_delivery,
        max_p99_ms=args.max_p99,
        max_duplicates=args.max_duplicates,
        out_dir=Path(args.out) if args.out else None,
        progress=args.progress,
        plot=not args.no_plot,
        save_receipts=args.save_receipts,
        drop_subscribers=args.drop_subscribers,
        drop_after_publish=args.drop_after_publish,
    )
    if args.run_id:
        kwargs["run_id"] = args.run_id
    return Config(**kwargs)


def execute(cfg: Config, *, quiet: bool = False) -> tuple[int, dict]:
    """Run, analyse, write results; returns (exit status, results). The Python API of the tool."""
    from postwire_loadtest.analysis import analyse
    from postwire_loadtest.progress import Progress
    from postwire_loadtest.report import check_objectives, summary_text, write_receipts, write_results, write_summary
    from postwire_loadtest.run import Runner

    runner = Runner(cfg, Progress(cfg.progress))
    raw = runner.run()
    results, series = analyse(raw)
    results["objectives"] = check_objectives(cfg, results)
    out_dir = cfg.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"results": "results.json", "summary": "summary.txt"}
    if cfg.plot:
        from postwire_loadtest.plot import plot

        plot(results, series, out_dir / "plot.png")
        files["plot"] = "plot.png"
    if cfg.save_receipts:
        write_receipts(out_dir, raw)
        files["receipts"] = "receipts.csv.gz"
    results["files"] = files
    text = summary_text(results)
    write_summary(out_dir, text)
    write_results(out_dir, results)
    if not quiet:
        print(text, end="")
        print(f"results in {out_dir}/ ({', '.join(files.values())})")

    if raw.failure or raw.timed_out:
        status = EXIT_RUN_FAILED
    elif not all(c["passed"] for c in results["objectives"]):
        status = EXIT_OBJECTIVE
    else:
        status = EXIT_OK
    results["exit_status"] = status
    write_results(out_dir, results)
    return status, results


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    status, _ = execute(cfg, quiet=args.quiet)
    return status


if __name__ == "__main__":
    sys.exit(main())
