"""The benchmark's markdown tables (the JSON next to them holds everything; these show the gist)."""

from __future__ import annotations

CAPACITY_P99_MS = 1000.0  # capacity: the highest rate delivered completely with p99 under this


def _ms(summary: dict | None, key: str) -> str:
    if not summary or not summary.get("count"):
        return "-"
    value = summary.get(key)
    return "-" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.1f}")


def _num(value, fmt: str = "g") -> str:
    return "-" if value is None else format(value, fmt)


def _nodes(row: dict, field: str) -> str:
    values = [
        f"{v[field]:g}"
        for k, v in sorted(row.get("processes", {}).items())
        if k.startswith("ws-") and v.get(field) is not None
    ]
    return " / ".join(values) or "-"


def _ok(row: dict) -> bool:
    return "results" in row and "derived" in row


def one_line(row: dict) -> str:
    if not _ok(row):
        return f"FAILED: {row.get('error')}"
    r, x = row["results"], row["derived"]
    d = r["deliveries"]
    g = r.get("load_generator") or {}
    return (
        f"delivered {d['delivered']}/{d['expected']} (missing {d['missing']}, dup {d['duplicates']}); "
        f"latency p50 {_ms(r['latency_ms'], 'p50')} p99 {_ms(r['latency_ms'], 'p99')} "
        f"max {_ms(r['latency_ms'], 'max')} ms; WS tier {_num(x['ws_cpu_us_per_delivery'])} us CPU/delivery, "
        f"{_num(x.get('ws_idle_kib_per_subscription'))} KiB/subscription idle, "
        f"{_num(x.get('ws_idle_cpu_ms_per_s_per_node'))} ms/s CPU per node idle, "
        f"{_num(x['ws_kib_per_subscription'])} at peak; generator "
        f"{_num(g.get('cpu_us_per_receipt'))} us/receipt, machine idle "
        f"{_num(g.get('machine_idle_publish_phase'), '.0%')}; busiest {x['busiest']} ({x['busiest_cores']} cores)"
    )


def _complete(row: dict) -> bool:
    d = row["results"]["deliveries"]
    return d["expected"] > 0 and d["delivered"] == d["expected"] and not row["results"]["outcome"].get("failure")


def _p99(row: dict) -> float | None:
    return row["results"]["latency_ms"].get("p99") if row["results"]["latency_ms"].get("count") else None


def _idle_kib(row: dict):
    return row["derived"].get("ws_idle_kib_per_subscription")


def _idle_cpu(row: dict):
    return row["derived"].get("ws_idle_cpu_ms_per_s_per_node")


def _engine(c: dict) -> str:
    fast = c.get("fast_paths", "all")
    return c["fanout"] + ("" if fast in (None, "all") else f" (fast paths: {fast})")


def _change(value, base) -> str:
    if value is None or base in (None, 0):
        return "-"
    return f"{value:g} ({(value - base) / base:+.0%})"


REACH_IN_FIGURES = (
    ("CPU µs per delivery", lambda r: r["derived"]["ws_cpu_us_per_delivery"]),
    ("node CPU ms/s idle", _idle_cpu),
    ("KiB per idle subscription", _idle_kib),
    ("p99 ms", _p99),
    ("CPU µs per connect", lambda r: r["derived"].get("ws_cpu_us_per_connect")),
)


def _reach_ins(runs: list[dict]) -> list[str]:
    """Each run with fast paths turned off against the run of the same configuration with all on."""

    def key(c):
        return (c["fanout"], c["subscribers"], c.get("rate", 1), c["ws_nodes"], c["layer"])

    base = {key(r["config"]): r for r in runs if _ok(r) and r["config"].get("fast_paths", "all") == "all"}
    variants = [
        r for r in runs if _ok(r) and r["config"].get("fast_paths", "all") != "all" and key(r["config"]) in base
    ]
    if not variants:
        return []
    lines = [
        "",
        "## What each fast path buys (the run with all on, then each with some off: change against all on)",
        "",
        "| engine | N | fast paths | " + " | ".join(name for name, _ in REACH_IN_FIGURES) + " |",
        "|---|---|---|" + "---|" * len(REACH_IN_FIGURES),
    ]
    for row in [base[k] for k in dict.fromkeys(key(v["config"]) for v in variants)] + variants:
        c = row["config"]
        ref = base[key(c)]
        cells = [
            f"{f(row):g}" if row is ref and f(row) is not None else _change(f(row), f(ref)) for _, f in REACH_IN_FIGURES
        ]
        lines.append(
            f"| {c['fanout']} | {c['subscribers']} | {c.get('fast_paths', 'all')} | " + " | ".join(cells) + " |"
        )
    return lines


def _ratio(a, b) -> str:
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}"


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    runs = report["runs"]
    lines = [
        f"# postwire fan-out benchmark {report['name']}",
        "",
        f"Measured {report['started_at']} on {m['cpu_model']} ({m['cores']} cores, {m['memory_gib']} GiB), "
        f"kernel {m['kernel']}, Python {m['python']}.",
        "",
        f"postwire commit {report.get('source', {}).get('commit')}"
        + (
            " (with uncommitted changes to the API, devstack or nginx)"
            if report.get("source", {}).get("api_uncommitted_changes")
            else ""
        )
        + ".",
        "",
        *([f"> {report['note']}", ""] if report.get("note") else []),
        f"Each run starts a fresh stack (nginx, {s['api_nodes']} gunicorn, K WebSocket nodes; a new database and "
        f"an emptied Redis), opens N subscriptions through nginx ({s['protocol']}, ramp {s['ramp_rate_per_s']:g}/s), "
        "warms up (warm-up posts until every subscriber got one), then publishes open-loop at the run's rate for "
        f"{s['duration_s']:g} s and waits up to {s['drain_s']:g} s for the last deliveries. Latency runs from just "
        "before the publish request to receipt. Everything, the load generator included, shares the same cores. "
        "Fan-out engines: `direct` = postwire (executed once per subscription shape, messages written by the "
        "hub); `strawberry` = postwire's plain path (strawberry executes and sends per subscriber); `tutorial` = "
        "the tutorial's design (bench/tutorial); `node` = bench/node-peer, the reference graphql-ws server on ws "
        "fed by Redis pub/sub, in place of the Daphne nodes, same nginx, same gunicorn publishing. "
        "`ENGINE@NAME` is postwire at another revision (checkouts below); `(fast paths: ...)` is postwire with "
        "POSTWIRE_FAST_PATHS set so (docs/compat.md).",
        *(
            ["", "Checkouts: " + ", ".join(f"`{k}` = {v}" for k, v in report["checkouts"].items()) + "."]
            if report.get("checkouts")
            else []
        ),
        "",
        "## Results",
        "",
        "| run | engine | N | publishes/s | delivered / expected | dup | p50 ms | p99 ms | max ms "
        "| WS tier CPU µs per delivery | KiB per subscription idle | at peak | WS node CPU ms/s idle "
        "| WS tier peak RSS MiB "
        "| connect p99 ms | WS CPU µs per connect | publish request p50 / p99 ms | generator µs per receipt "
        "| machine idle | busiest process (cores) | errors |",
        "|" + "---|" * 21,
    ]
    for row in runs:
        c = row["config"]
        head = f"| {c['name']} | {_engine(c)} | {c['subscribers']} | {c.get('rate', 1):g} "
        if not _ok(row):
            lines.append(head + f"| failed: {row.get('error', '?')} " + "| " * 16 + "|")
            continue
        r, x = row["results"], row["derived"]
        d, lat = r["deliveries"], r["latency_ms"]
        g = r.get("load_generator") or {}
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"
        if r["outcome"].get("failure"):
            errors = f"run failed: {r['outcome']['failure']}; " + errors
        idle = _num(g.get("machine_idle_publish_phase"), ".0%")
        publish = r["publishes"].get("response_ms")
        if g.get("machine_saturated"):
            idle += " **saturated**"
        lines.append(
            head + f"| {d['delivered']} / {d['expected']} | {d['duplicates']} | {_ms(lat, 'p50')} | {_ms(lat, 'p99')} "
            f"| {_ms(lat, 'max')} | {_num(x['ws_cpu_us_per_delivery'])} "
            f"| {_num(x.get('ws_idle_kib_per_subscription'))} "
            f"| {_num(x['ws_kib_per_subscription'])} "
            f"| {_num(x.get('ws_idle_cpu_ms_per_s_per_node'))} "
            f"| {x['ws_peak_rss_mib']:g} | {_ms(r['subscribers']['connect_ms'], 'p99')} "
            f"| {_num(x.get('ws_cpu_us_per_connect'))} "
            f"| {_ms(publish, 'p50')} / {_ms(publish, 'p99')} "
            f"| {_num(g.get('cpu_us_per_receipt'))} | {idle} | {x['busiest']} ({x['busiest_cores']}) | {errors} |"
        )

    # --- postwire / Node, same N and rate ------------------------------------------------------
    peers = {
        (r["config"]["subscribers"], r["config"].get("rate", 1), r["config"]["ws_nodes"]): r
        for r in runs
        if r["config"]["fanout"] == "node" and _ok(r)
    }
    compared = [
        r
        for r in runs
        if r["config"]["fanout"] != "node"
        and _ok(r)
        and (r["config"]["subscribers"], r["config"].get("rate", 1), r["config"]["ws_nodes"]) in peers
    ]
    if compared:
        lines += [
            "",
            "## postwire / Node peer (same N, rate and K; below 1 means postwire is cheaper or faster)",
            "",
            "| run | p99 ratio | CPU per delivery ratio | idle memory per subscription ratio "
            "| idle CPU per node ratio |",
            "|---|---|---|---|---|",
        ]
        for row in compared:
            c = row["config"]
            peer = peers[(c["subscribers"], c.get("rate", 1), c["ws_nodes"])]
            lines.append(
                f"| {c['name']} | {_ratio(_p99(row), _p99(peer))} "
                f"| {_ratio(row['derived']['ws_cpu_us_per_delivery'], peer['derived']['ws_cpu_us_per_delivery'])} "
                f"| {_ratio(_idle_kib(row), _idle_kib(peer))} | {_ratio(_idle_cpu(row), _idle_cpu(peer))} |"
            )

    lines += _reach_ins(runs)

    # --- capacity: several rates at one N -------------------------------------------------------
    rates = sorted({r["config"].get("rate", 1) for r in runs})
    if len(rates) > 1:
        lines += [
            "",
            f"## Capacity (highest deliveries/s with 100 % delivered and p99 < {CAPACITY_P99_MS:g} ms)",
            "",
            "| engine | N | K | capacity, deliveries/s | at publishes/s | first failing rate | "
            "what saturated first (cores busy at the first failing rate) |",
            "|---|---|---|---|---|---|---|",
        ]
        groups: dict[tuple, list[dict]] = {}
        for row in runs:
            c = row["config"]
            groups.setdefault((_engine(c), c["subscribers"], c["ws_nodes"], c["layer"]), []).append(row)
        for (fanout, n, k, _layer), rows in groups.items():
            best = failing = None
            for row in sorted(rows, key=lambda r: r["config"].get("rate", 1)):
                if _ok(row) and _complete(row) and (_p99(row) or 1e12) < CAPACITY_P99_MS:
                    best = row
                else:
                    failing = row
                    break
            capacity = (
                f"{best['derived']['deliveries_per_s']:g} | {best['config'].get('rate', 1):g}"
                if best
                else "below the lowest rate tried | -"
            )
            failed = "none | -"
            if failing is not None:
                top = list(failing["derived"]["cores_busy_publish_phase"].items())[:3] if _ok(failing) else []
                idle = ((failing.get("results") or {}).get("load_generator") or {}).get("machine_idle_publish_phase")
                failed = (
                    f"{failing['config'].get('rate', 1):g} | "
                    + (", ".join(f"{name} {cores:g}" for name, cores in top) or "-")
                    + (f"; machine idle {idle:.0%}" if idle is not None else "")
                )
            lines.append(f"| {fanout} | {n} | {k} | {capacity} | {failed} |")

    lines += [
        "",
        "## Per WebSocket node",
        "",
        "| run | node | subscribers | delivered / expected | VmHWM MiB | RSS at start MiB "
        "| KiB per subscriber idle | at peak | CPU s (whole load test) | CPU s (publish phase) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in runs:
        for name, p in sorted(row.get("processes", {}).items()):
            if not name.startswith("ws-") or not _ok(row):
                continue
            node = row["results"]["nodes"].get(name, {})
            lines.append(
                f"| {row['config']['name']} | {name} | {p.get('subscribers', 0)} "
                f"| {node.get('delivered', '-')} / {node.get('expected', '-')} | {p.get('vm_hwm_mib', '-')} "
                f"| {p['rss_mib_start']} | {p.get('idle_kib_per_subscriber', '-')} "
                f"| {p.get('kib_per_subscriber', '-')} "
                f"| {p['cpu_s_total']} "
                f"| {p['cpu_s_publish_phase']} |"
            )
    lines += [
        "",
        "## Cores busy during the publish phase (CPU seconds / phase seconds)",
        "",
        "| run | processes |",
        "|---|---|",
    ]
    for row in runs:
        if _ok(row):
            busy = ", ".join(f"{k} {v:g}" for k, v in row["derived"]["cores_busy_publish_phase"].items())
            lines.append(f"| {row['config']['name']} | {busy} |")
    plots = [row for row in runs if row.get("plot")]
    if plots:
        lines += ["", "## Plots", ""] + [f"- [{row['config']['name']}]({row['plot']})" for row in plots]
    lines += ["", "## Versions", "", "| component | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["versions"].items()]
    lines += [
        "",
        "## Reading it",
        "",
        "- *delivered / expected* counts (publish, subscriber) pairs of subscribers connected for that publish;"
        " what is not delivered by the publish's deadline (the drain) is missing.",
        "- *WS tier CPU per delivery*: CPU seconds of all WebSocket nodes (Daphne, or the Node peer) in the "
        "publish phase (first publish to end of drain, cut from samples every 0.5 s), divided by deliveries. "
        "It includes the kernel's share (a loopback send is most of it) and idle-socket work (pings).",
        "- *KiB per subscription*: *idle* is (resident set just before the first measured publish - resident "
        "set before the load test) / subscribers: every socket connected and subscribed, nothing in flight. "
        "*At peak* uses the peak resident set (VmHWM) instead, so it includes the publish phase's buffers.",
        "- *WS node CPU ms/s idle*: CPU of one WebSocket node per second (mean over the nodes) in the idle "
        "window after warm-up (`--idle`, default 20 s: one Daphne ping interval), every subscriber connected and "
        "nothing published: keep-alive pings and pongs (every 20 s per socket, on Daphne and the Node "
        "peer alike), timers.",
        "- *WS CPU µs per connect*: CPU of all WebSocket nodes while the N subscribers connected and subscribed "
        "(the load tester's ramp), divided by N: handshake, `connection_init`, subscribe.",
        "- *publish request*: the `publishPost` HTTP request through nginx as the load tester timed it (its "
        "response, not the deliveries), over the run's publishes.",
        "- *generator µs per receipt*: the load generator's own CPU (coordinator and workers) in the publish "
        "phase per receipt. *machine idle*: idle share of all cores during the publish phase; **saturated** "
        "(under 10 %) means the latency figures measure the machine rather than the system.",
        "- *busiest process*: the process tree with the most CPU during the publish phase, in cores; on a 2-core "
        "machine, a process near 1.0 is what limits the run.",
        "- Benchmarks never fail on timing; a failed run is listed with its reason.",
        "",
    ]
    return "\n".join(lines)
