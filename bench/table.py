"""The benchmark's markdown table (the JSON next to it holds everything, this shows the gist)."""

from __future__ import annotations


def _ms(summary: dict | None, key: str) -> str:
    if not summary or not summary.get("count"):
        return "-"
    value = summary.get(key)
    return "-" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.1f}")


def _nodes(row: dict, field: str) -> str:
    values = [f"{v[field]:g}" for k, v in sorted(row.get("processes", {}).items())
              if k.startswith("ws-") and v.get(field) is not None]
    return " / ".join(values) or "-"


def _cpu(row: dict, name: str) -> str:
    value = row.get("processes", {}).get(name, {}).get("cpu_s_publish_phase")
    return "-" if value is None else f"{value:.2f}"


def one_line(row: dict) -> str:
    if "results" not in row:
        return f"FAILED: {row.get('error')}"
    r = row["results"]
    d = r["deliveries"]
    return (f"delivered {d['delivered']}/{d['expected']} (missing {d['missing']}, dup {d['duplicates']}); "
            f"latency p50 {_ms(r['latency_ms'], 'p50')} p99 {_ms(r['latency_ms'], 'p99')} "
            f"max {_ms(r['latency_ms'], 'max')} ms; Daphne VmHWM MiB {_nodes(row, 'vm_hwm_mib')}; "
            f"Daphne CPU s (publish phase) {_nodes(row, 'cpu_s_publish_phase')}")


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        f"# postwire fan-out benchmark {report['name']}",
        "",
        f"Measured {report['started_at']} on {m['cpu_model']} ({m['cores']} cores, {m['memory_gib']} GiB), "
        f"kernel {m['kernel']}, Python {m['python']}.",
        "",
        f"postwire commit {report.get('source', {}).get('commit')}"
        + (" (with uncommitted changes to the API, devstack or nginx)"
           if report.get("source", {}).get("api_uncommitted_changes") else "") + ".",
        "",
        *([f"> {report['note']}", ""] if report.get("note") else []),
        f"Each run starts a fresh stack (nginx with {s['nginx_workers']} workers, {s['api_nodes']} gunicorn, "
        "K Daphne nodes; a new database and an emptied Redis), opens N subscriptions through nginx "
        f"({s['protocol']}, ramp {s['ramp_rate_per_s']:g}/s), warms up (warm-up posts until every subscriber got "
        f"one), then publishes open-loop at {s['rate_per_s']:g}/s for {s['duration_s']:g} s and waits up to "
        f"{s['drain_s']:g} s for the last deliveries. Latency runs from just before the publish request to "
        "receipt by the subscriber. Everything (load generator included) shares the same cores.",
        "",
        "## Results",
        "",
        "| run | K | fan-out | layer | N | connected | delivered / expected | missing | dup | p50 ms | p90 ms "
        "| p99 ms | max ms | last sub. p50 / max ms | connect p99 ms | Daphne VmHWM MiB (per node) "
        "| Daphne CPU s, publish phase (per node) | Redis CPU s | Postgres CPU s | gunicorn CPU s "
        "| load gen. CPU s (whole run) | errors |",
        "|" + "---|" * 22,
    ]
    for row in report["runs"]:
        c = row["config"]
        head = f"| {c['name']} | {c['ws_nodes']} | {c['fanout']} | {c['layer']} | {c['subscribers']} "
        if "results" not in row:
            lines.append(head + f"| failed: {row.get('error', '?')} " + "| " * 16 + "|")
            continue
        r = row["results"]
        d, lat, last = r["deliveries"], r["latency_ms"], r["last_subscriber_ms"]
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"
        if r["outcome"].get("failure"):
            errors = f"run failed: {r['outcome']['failure']}; " + errors
        lines.append(
            head + f"| {r['subscribers']['connected']} | {d['delivered']} / {d['expected']} | {d['missing']} "
            f"| {d['duplicates']} | {_ms(lat, 'p50')} | {_ms(lat, 'p90')} | {_ms(lat, 'p99')} | {_ms(lat, 'max')} "
            f"| {_ms(last, 'p50')} / {_ms(last, 'max')} | {_ms(r['subscribers']['connect_ms'], 'p99')} "
            f"| {_nodes(row, 'vm_hwm_mib')} | {_nodes(row, 'cpu_s_publish_phase')} | {_cpu(row, 'redis')} "
            f"| {_cpu(row, 'postgres')} | {_cpu(row, 'api-1')} | {row.get('loadgen_cpu_s', '-')} | {errors} |"
        )
    lines += [
        "",
        "## Per Daphne node",
        "",
        "| run | node | subscribers | delivered / expected | VmHWM MiB | RSS at start MiB | KiB per subscriber "
        "| CPU s (whole load test) | CPU s (publish phase) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["runs"]:
        for name, p in sorted(row.get("processes", {}).items()):
            if not name.startswith("ws-"):
                continue
            node = row["results"]["nodes"].get(name, {})
            lines.append(
                f"| {row['config']['name']} | {name} | {p.get('subscribers', 0)} "
                f"| {node.get('delivered', '-')} / {node.get('expected', '-')} | {p.get('vm_hwm_mib', '-')} "
                f"| {p['rss_mib_start']} | {p.get('kib_per_subscriber', '-')} | {p['cpu_s_total']} "
                f"| {p['cpu_s_publish_phase']} |"
            )
    plots = [row for row in report["runs"] if row.get("plot")]
    if plots:
        lines += ["", "## Plots", ""] + [f"- [{row['config']['name']}]({row['plot']})" for row in plots]
    lines += ["", "## Versions", "", "| component | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["versions"].items()]
    lines += [
        "",
        "## Reading it",
        "",
        "- *delivered / expected* counts (publish, subscriber) pairs of subscribers connected for that publish;"
        " *missing* are lost deliveries (the subscriber stayed connected past the publish's deadline).",
        "- *last sub.* is, per publish, the time until the LAST subscriber had it; p50 and max over publishes.",
        "- CPU seconds are summed over each process tree and cut to the publish phase (first publish to end of "
        "drain) from samples every 0.5 s; the load generator's figure covers its whole run (connect included).",
        "- VmHWM is the kernel's peak resident set of each Daphne process; KiB per subscriber = "
        "(VmHWM - RSS before the load test) / subscribers on that node.",
        "- Benchmarks never fail on timing; a failed run is listed with its reason.",
        "",
    ]
    return "\n".join(lines)
