"""`python -m bench`: fan-out benchmark of postwire on the local stack, beside a Node.js peer.

For every configuration (WebSocket nodes K x fan-out engine x channel layer x N x publish rate)
it starts a fresh stack (nginx, gunicorn, K WebSocket nodes; one PostgreSQL and one Redis shared
by all runs, with a new database and an emptied Redis per run), runs postwire-loadtest against
it, samples CPU and memory of every server process, and writes a markdown + JSON table.

The fan-out engines: `direct` (postwire: executed once per subscription shape, messages written by
the hub), `strawberry` (the same hub, strawberry executing and sending per subscriber: postwire's
plain path), `tutorial` (bench/tutorial: the design of the Strawberry + Channels tutorial
postwire started from), and `node`: bench/node-peer, the reference graphql-ws server on ws fed by
Redis pub/sub, in the WebSocket nodes' place behind the same nginx, with the same gunicorn
publishing (so it needs the pubsub layer). `direct@NAME` runs postwire from another revision
(`--checkout NAME=REV`), so a before/after pair runs in one invocation; `--fast-paths` runs
postwire with some of its reach-ins into other projects turned off (POSTWIRE_FAST_PATHS), to
measure what each one buys.

Benchmarks never fail on timing: a run that goes wrong is recorded as such and the next one runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOADTEST_SRC = REPO / "services" / "loadtest"
sys.path[:0] = [p for p in (str(REPO), str(LOADTEST_SRC)) if p not in sys.path]

from bench import machine, table  # noqa: E402
from bench.sampler import Sampler, vm_hwm_bytes  # noqa: E402
from devstack.backing import Postgres, Redis  # noqa: E402
from devstack.stack import STAFF_PASSWORD, STAFF_USERNAME, Stack  # noqa: E402

STAFF = (STAFF_USERNAME, STAFF_PASSWORD)
NODE_PEER = REPO / "bench" / "node-peer"
SOCKETS_PER_NGINX_WORKER = 5000  # each proxied WebSocket holds two of a worker's connections


def csv_list(kind):
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=csv_list(int), default=[2000], help="subscriber counts, e.g. 2000,10000")
    p.add_argument("--ws-nodes", type=csv_list(int), default=[3], help="WebSocket node counts (default 3)")
    p.add_argument(
        "--fanout",
        type=csv_list(str),
        default=["direct", "strawberry", "node"],
        help="direct (postwire), strawberry (postwire's plain path), tutorial (the tutorial's design), "
        "node (the Node.js graphql-ws peer); ENGINE@NAME runs postwire from --checkout NAME; "
        "default direct,strawberry,node",
    )
    p.add_argument(
        "--fast-paths",
        type=lambda text: [v.strip() for v in text.split(";") if v.strip()],
        default=["all"],
        metavar="SETTING;SETTING",
        help="POSTWIRE_FAST_PATHS values to run postwire with, one run each, separated by ';', e.g. "
        "--fast-paths='all;-direct_writes;-sweeps,-keepalive;none' (default all)",
    )
    p.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="NAME=REV",
        help="another revision of postwire to run as ENGINE@NAME (a git worktree of REV), e.g. before=HEAD~3",
    )
    p.add_argument(
        "--layer",
        type=csv_list(str),
        default=["pubsub"],
        help="pubsub (RedisPubSubChannelLayer, the default here: the Node peer reads it too) "
        "and/or core (RedisChannelLayer)",
    )
    p.add_argument("--duration", type=float, default=30.0, help="seconds of publishing per run (default 30)")
    p.add_argument(
        "--rate",
        type=csv_list(float),
        default=[1.0],
        help="publishes per second; several (e.g. 5,10,20,40) make a capacity sweep (default 1)",
    )
    p.add_argument("--ramp-rate", type=float, default=500.0, help="new sockets per second (default 500)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds allowed for the last deliveries")
    p.add_argument(
        "--idle",
        type=float,
        default=20.0,
        help="seconds every subscriber sits idle before the publishes, for the WS tier's idle CPU "
        "(default 20: one Daphne ping interval; 0 skips it)",
    )
    p.add_argument(
        "--nginx-worker-connections",
        type=int,
        default=19000,
        help="per nginx worker; each proxied WebSocket takes two (default 19000: the open-file "
        "limit is 20,000 per process)",
    )
    p.add_argument(
        "--nginx-workers",
        type=int,
        default=0,
        help=f"nginx worker processes (default: one per {SOCKETS_PER_NGINX_WORKER} sockets, at least 2)",
    )
    p.add_argument("--protocol", default="graphql-transport-ws", help="passed to the load tester")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="where the table goes")
    p.add_argument("--label", default="", help="appended to the result file names")
    p.add_argument("--no-plots", action="store_true", help="do not copy each run's plot next to the table")
    p.add_argument("--keep-logs", action="store_true", help="keep every run's stack logs and load-test output")
    p.add_argument(
        "--extra-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the stack's nodes (repeatable)",
    )
    return p.parse_args(argv)


FANOUTS = ("direct", "strawberry", "tutorial", "node")
POSTWIRE_ENGINES = ("direct", "strawberry")
# What older revisions call the engines (POSTWIRE_FANOUT, before POSTWIRE_DELIVERY).
OLD_NAMES = {"direct": "shared", "strawberry": "hub"}


def configurations(args) -> list[dict]:
    rows = []
    checkouts = dict(kv.split("=", 1) for kv in args.checkout)
    for fanout in args.fanout:
        engine, _, checkout = fanout.partition("@")
        if engine not in FANOUTS:
            raise SystemExit(f"--fanout: {engine!r} is not one of {', '.join(FANOUTS)}")
        if checkout and (checkout not in checkouts or engine not in POSTWIRE_ENGINES):
            raise SystemExit(f"--fanout: {fanout!r} needs --checkout {checkout}=REV and a postwire engine")
    # Same N and rate side by side: the engines of one (N, rate) run one after the other.
    for n, rate, k, layer, fanout in itertools.product(args.n, args.rate, args.ws_nodes, args.layer, args.fanout):
        if fanout == "node" and layer != "pubsub":
            continue  # the Node peer subscribes to the pubsub layer's channel
        engine, _, checkout = fanout.partition("@")
        variants = args.fast_paths if engine in POSTWIRE_ENGINES and not checkout else ["all"]
        for fast_paths in variants:
            name = f"K{k}-{fanout}-{layer}-N{n}" + (f"-R{rate:g}" if len(args.rate) > 1 or rate != 1 else "")
            if fast_paths != "all":
                name += "-fp" + fast_paths.replace(",", "")
            rows.append(
                {
                    "ws_nodes": k,
                    "fanout": fanout,
                    "engine": engine,
                    "checkout": checkout or None,
                    "revision": checkouts.get(checkout) if checkout else None,
                    "fast_paths": fast_paths,
                    "layer": layer,
                    "subscribers": n,
                    "rate": rate,
                    "name": name,
                }
            )
    return rows


def make_checkouts(args, work: Path) -> dict[str, Path]:
    """A git worktree per --checkout, with the services' code of that revision."""
    paths = {}
    for item in args.checkout:
        name, rev = item.split("=", 1)
        path = work / f"checkout-{name}"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev], check=True)
        paths[name] = path
    return paths


def remove_checkouts(paths: dict[str, Path]) -> None:
    for path in paths.values():
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)


def ensure_node_peer() -> None:
    if not (NODE_PEER / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_PEER, check=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_loadtest(args, stack: Stack, conf: dict, out_dir: Path, run_id: str) -> tuple[int, dict | None, float]:
    """The load tester as a separate process (its own fd limit, its own worker processes)."""
    argv = [
        sys.executable,
        "-m",
        "postwire_loadtest",
        "--url",
        stack.http_url,
        "--username",
        STAFF[0],
        "-n",
        str(conf["subscribers"]),
        "--rate",
        str(conf["rate"]),
        "--duration",
        str(args.duration),
        "--drain",
        str(args.drain),
        "--idle",
        str(args.idle),
        "--ramp-rate",
        str(args.ramp_rate),
        "--protocol",
        args.protocol,
        "--run-id",
        run_id,
        "--out",
        str(out_dir),
        "--progress",
        "plain",
    ]
    if args.keep_logs:
        argv.append("--save-receipts")
    env = dict(
        os.environ,
        POSTWIRE_PASSWORD=STAFF[1],
        PYTHONPATH=os.pathsep.join(filter(None, [str(LOADTEST_SRC), os.environ.get("PYTHONPATH")])),
    )
    expected = conf["subscribers"] / args.ramp_rate + 30 + args.idle + args.duration + args.drain
    before = children_cpu()
    with open(out_dir.parent / f"{out_dir.name}.log", "w") as log:
        try:
            code = subprocess.run(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=expected + 300
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    cpu = children_cpu() - before
    results_file = out_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else None
    return code, results, round(cpu, 3)


def measure(args, conf: dict, postgres: Postgres, redis_url: str, work: Path, index: int) -> dict:
    import redis as redis_py

    row = {"config": conf}
    run_dir = work / conf["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    database_url = postgres.create_database(f"bench_{index}")
    # Group memberships and queues of earlier runs would otherwise cost this one.
    redis_py.Redis.from_url(redis_url).flushall()
    extra = {"CHANNEL_LAYER": conf["layer"]}
    ws_command = None
    postwire = None
    engine = conf["engine"]
    if engine == "node":
        ws_command = ["node", str(NODE_PEER / "server.mjs")]
    elif engine == "tutorial":
        ws_command = [
            "sh",
            "-c",
            f'exec "{sys.executable}" -m daphne -b 127.0.0.1 -p "$PORT" bench.tutorial.asgi:application',
        ]
        extra["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "services" / "api")])
        extra["DJANGO_SETTINGS_MODULE"] = "server.settings"
    else:
        extra["POSTWIRE_DELIVERY"] = engine
        extra["POSTWIRE_FANOUT"] = OLD_NAMES[engine]  # what a revision from before the rename reads
        extra["POSTWIRE_FAST_PATHS"] = conf["fast_paths"]
        if conf["checkout"]:
            postwire = args.checkout_paths[conf["checkout"]] / "services" / "api" / "bin" / "postwire"
    extra.update(dict(kv.split("=", 1) for kv in args.extra_env))
    nginx_workers = args.nginx_workers or max(2, -(-conf["subscribers"] // SOCKETS_PER_NGINX_WORKER))
    row["nginx_workers"] = nginx_workers
    stack = Stack(
        ws_nodes=conf["ws_nodes"],
        api_nodes=1,
        run_dir=run_dir / "stack",
        database_url=database_url,
        redis_url=redis_url,
        extra_env=extra,
        ws_command=ws_command,
        nginx_workers=nginx_workers,
        postwire=postwire,
    )
    try:
        t0 = time.monotonic()
        stack.start()
        row["stack_start_s"] = round(time.monotonic() - t0, 1)
        pids = {n.name: n.process.pid for n in stack.ws + stack.api}
        pids["nginx"] = stack.nginx.pid  # the master: its workers are counted in its tree
        pids["redis"] = int(redis_py.Redis.from_url(redis_url).info("server")["process_id"])
        pids["postgres"] = postgres.process.pid
        sampler = Sampler(pids).start()
        started = time.time()
        code, results, loadgen_cpu = run_loadtest(args, stack, conf, run_dir / "loadtest", f"b{index}")
        ended = time.time()
        sampler.stop()
        hwm = {n.name: vm_hwm_bytes(n.process.pid) for n in stack.ws}
    except Exception as exc:  # a benchmark records a broken run and moves on
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    finally:
        stack.stop()

    row["loadtest_exit"] = code
    row["loadgen_cpu_s"] = loadgen_cpu
    if results is None:
        row["error"] = f"load tester wrote no results (exit {code}); see {run_dir}/loadtest.log"
        return row
    phases = results["phases"]
    pub_start = phases.get("publish_start", {}).get("wall", started)
    pub_end = phases.get("drain_end", {}).get("wall", ended)
    idle_window = (phases["idle_start"]["wall"], phases["idle_end"]["wall"]) if "idle_end" in phases else None
    ramp_window = (phases["ramp_start"]["wall"], phases["ramp_end"]["wall"]) if "ramp_end" in phases else None
    processes = {}
    for name in pids:
        rss_start, rss_peak = sampler.rss_first_and_peak(name)
        entry = {
            "cpu_s_total": sampler.cpu_between(name, started, ended),
            "cpu_s_publish_phase": sampler.cpu_between(name, pub_start, pub_end),
            "cpu_s_idle": sampler.cpu_between(name, *idle_window) if idle_window else None,
            "cpu_s_ramp": sampler.cpu_between(name, *ramp_window) if ramp_window else None,
            "rss_mib_start": round(rss_start / 2**20, 1),
            "rss_mib_peak_sampled": round(rss_peak / 2**20, 1),
        }
        if name in hwm and hwm[name]:
            entry["vm_hwm_mib"] = round(hwm[name] / 2**20, 1)
            subs = results["subscribers"]["nodes"].get(name, 0)
            entry["subscribers"] = subs
            if subs:
                entry["kib_per_subscriber"] = round((hwm[name] - rss_start) / 1024 / subs, 1)
                # Idle: every socket connected and subscribed, before the measured publishes.
                idle = sampler.rss_before(name, pub_start)
                if idle:
                    entry["idle_kib_per_subscriber"] = round((idle - rss_start) / 1024 / subs, 1)
        processes[name] = entry
    row.update(
        publish_phase_s=round(pub_end - pub_start, 2),
        idle_s=round(idle_window[1] - idle_window[0], 2) if idle_window else None,
        processes=processes,
        results={
            k: results[k]
            for k in (
                "deliveries",
                "latency_ms",
                "last_subscriber_ms",
                "subscribers",
                "warmup",
                "publishes",
                "errors",
                "outcome",
                "nodes",
                "load_generator",
            )
        },
    )
    row["derived"] = derived(row)
    plot = run_dir / "loadtest" / "plot.png"
    if plot.exists() and args.plots_dir is not None:
        args.plots_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(plot, args.plots_dir / f"{conf['name']}.png")
        row["plot"] = f"{args.plots_dir.name}/{conf['name']}.png"
    if not args.keep_logs:
        shutil.rmtree(run_dir / "stack", ignore_errors=True)
    return row


def derived(row: dict) -> dict:
    """The figures the comparison is about, from the raw ones."""
    processes, results = row["processes"], row["results"]
    ws = {name: p for name, p in processes.items() if name.startswith("ws-")}
    delivered = results["deliveries"]["delivered"]
    ws_cpu = sum(p["cpu_s_publish_phase"] or 0 for p in ws.values())
    subs = sum(p.get("subscribers", 0) for p in ws.values())
    grown = [p["kib_per_subscriber"] * p["subscribers"] for p in ws.values() if p.get("kib_per_subscriber")]
    idle = [p["idle_kib_per_subscriber"] * p["subscribers"] for p in ws.values() if p.get("idle_kib_per_subscriber")]
    phase = row["publish_phase_s"] or 1
    idle_cpu = [p["cpu_s_idle"] for p in ws.values() if p.get("cpu_s_idle") is not None]
    # Which process was busiest during the publish phase, in cores (1.0 = one core all the time).
    # The load generator's figure covers its worker processes and coordinator.
    busy = {name: (p["cpu_s_publish_phase"] or 0) / phase for name, p in processes.items()}
    generator = results.get("load_generator") or {}
    if generator.get("cpu_s_publish_phase") is not None:
        busy["load generator"] = generator["cpu_s_publish_phase"] / phase
    busiest = max(busy, key=busy.get) if busy else None
    return {
        "ws_cpu_s_publish_phase": round(ws_cpu, 3),
        "ws_cpu_us_per_delivery": round(ws_cpu / delivered * 1e6, 1) if delivered else None,
        "ws_kib_per_subscription": round(sum(grown) / subs, 1) if grown and subs else None,
        "ws_idle_kib_per_subscription": round(sum(idle) / subs, 1) if idle and subs else None,
        # CPU of all WebSocket nodes while the subscribers connected and subscribed, per subscriber.
        "ws_cpu_us_per_connect": (
            round(sum(p["cpu_s_ramp"] for p in ws.values()) / subs * 1e6, 1)
            if subs and all(p.get("cpu_s_ramp") is not None for p in ws.values())
            else None
        ),
        # CPU of one WebSocket node per second while its subscribers sit idle (pings, timers).
        "ws_idle_cpu_ms_per_s_per_node": (
            round(sum(idle_cpu) / len(idle_cpu) / row["idle_s"] * 1000, 1) if idle_cpu and row.get("idle_s") else None
        ),
        "ws_peak_rss_mib": round(sum(p.get("vm_hwm_mib") or 0 for p in ws.values()), 1),
        "deliveries_per_s": round(delivered / phase, 1),
        "busiest": busiest,
        "busiest_cores": round(busy[busiest], 2) if busiest else None,
        "cores_busy_publish_phase": {k: round(v, 2) for k, v in sorted(busy.items(), key=lambda kv: -kv[1])},
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    confs = configurations(args)
    if any(c["fanout"] == "node" for c in confs):
        ensure_node_peer()
    # devstack renders nginx.conf from this process's environment.
    os.environ["NGINX_WORKER_CONNECTIONS"] = str(args.nginx_worker_connections)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = stamp + (f"-{args.label}" if args.label else "")
    work = Path(tempfile.mkdtemp(prefix=f"postwire-bench-{stamp}-"))
    args.plots_dir = None if args.no_plots else args.out / f"{name}-plots"
    report = {
        "name": name,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.machine(),
        "source": machine.source(),
        "versions": machine.versions(),
        "settings": {
            "duration_s": args.duration,
            "rates_per_s": args.rate,
            "ramp_rate_per_s": args.ramp_rate,
            "drain_s": args.drain,
            "idle_s": args.idle,
            "protocol": args.protocol,
            "api_nodes": 1,
            "nginx_workers": args.nginx_workers or f"one per {SOCKETS_PER_NGINX_WORKER} sockets, >= 2",
            "nginx_worker_connections": args.nginx_worker_connections,
            "extra_env": args.extra_env,
            "fast_paths": args.fast_paths,
        },
        "runs": [],
    }
    print(f"bench: {len(confs)} run(s); work dir {work}", flush=True)
    args.checkout_paths = make_checkouts(args, work)
    report["checkouts"] = {
        name: subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        for name, path in args.checkout_paths.items()
    }
    postgres = Postgres(work).start()
    redis = Redis(work).start()
    try:
        for i, conf in enumerate(confs, 1):
            print(f"bench: [{i}/{len(confs)}] {conf['name']} ...", flush=True)
            row = measure(args, conf, postgres, redis.url, work, i)
            report["runs"].append(row)
            print("bench:   " + table.one_line(row), flush=True)
    except KeyboardInterrupt:
        print("bench: interrupted; writing what was measured", flush=True)
    finally:
        redis.stop()
        postgres.stop()
        remove_checkouts(args.checkout_paths)
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(table.markdown(report))
    print(f"bench: wrote {args.out / (name + '.md')} and .json", flush=True)
    if args.keep_logs:
        print(f"bench: logs kept in {work}", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
