"""Objectives, the human summary, and the files a run leaves behind."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

from postwire_loadtest.config import Config

PER_PUBLISH_LISTED = 30  # longer runs list only the worst publishes


def check_objectives(cfg: Config, results: dict) -> list[dict]:
    checks = []
    d = results["deliveries"]
    if cfg.min_delivery is not None:
        ratio = d["ratio"]
        checks.append(
            {
                "objective": "min_delivery",
                "target": cfg.min_delivery,
                "actual": ratio,
                "passed": ratio is not None and ratio >= cfg.min_delivery,
            }
        )
    if cfg.max_p99_ms is not None:
        p99 = results["latency_ms"].get("p99")
        checks.append(
            {
                "objective": "max_p99_ms",
                "target": cfg.max_p99_ms,
                "actual": p99,
                "passed": p99 is not None and p99 <= cfg.max_p99_ms,
            }
        )
    if cfg.max_duplicates is not None:
        checks.append(
            {
                "objective": "max_duplicates",
                "target": cfg.max_duplicates,
                "actual": d["duplicates"],
                "passed": d["duplicates"] <= cfg.max_duplicates,
            }
        )
    return checks


def _pct(summary: dict) -> str:
    if not summary.get("count"):
        return "n/a"
    return "  ".join(f"{k} {summary[k]:.1f}" for k in ("p50", "p90", "p99", "p99.9", "max")) + " ms"


def summary_text(results: dict) -> str:
    cfg = results["config"]
    s, w, p, d = results["subscribers"], results["warmup"], results["publishes"], results["deliveries"]
    outcome = results["outcome"]
    lines = [
        f"postwire-loadtest run {results['run_id']} ({results['started_at']})",
        f"target       {cfg['url']}   ws {cfg['ws_url']}",
    ]
    if outcome["failure"]:
        lines.append(f"RUN FAILED   {outcome['failure']}")
    if outcome["timed_out"]:
        lines.append(f"TIMED OUT    after {cfg['timeout']:.0f}s; the figures below cover what was seen")
    lines += [
        f"subscribers  {s['connected']}/{s['requested']} connected, {s['failed']} failed "
        f"({', '.join(f'{k} {v}' for k, v in s['protocols'].items()) or 'none'}); "
        f"ramp {cfg['ramp_rate']:g}/s over {cfg['workers']} worker(s), "
        f"{results['environment']['source_addresses']} source address(es)",
        f"  connect    {_pct(s['connect_ms'])}",
        f"  nodes      {'  '.join(f'{k} {v}' for k, v in s['nodes'].items()) or 'none'}",
        f"  left       {s['disconnected']} disconnected"
        + (f" ({', '.join(f'{k} {v}' for k, v in s['disconnect_reasons'].items())})" if s["disconnected"] else ""),
        (
            f"warm-up      {w['method']}: {w.get('posts', 0)} post(s), {w.get('live_subscribers', 0)} live, "
            f"{w.get('not_live', 0)} not live, {w.get('seconds', 0):.1f}s"
            if w.get("method")
            else "warm-up      not reached"
        ),
        f"publishes    {p['ok']}/{p['requested']} ok at {p['rate']:g}/s open loop, {p['failed']} failed; "
        f"response {_pct(p['response_ms'])}; max schedule lag {p['max_schedule_lag_ms']:.1f} ms",
        f"deliveries   {d['delivered']}/{d['expected']} expected (ratio "
        f"{'n/a' if d['ratio'] is None else format(d['ratio'], '.6f')}), missing {d['missing']}, "
        f"duplicates {d['duplicates']}, out-of-order {d['out_of_order']}, "
        f"interrupted by disconnect {d['interrupted_by_disconnect']}",
        f"latency      {_pct(results['latency_ms'])}   (just before the publish request -> receipt)",
        f"last sub     {_pct(results['last_subscriber_ms'])}   (per publish: until the last subscriber had it)",
    ]
    if results["nodes"]:
        lines.append(
            "per node     " + "  ".join(f"{k} {v['delivered']}/{v['expected']}" for k, v in results["nodes"].items())
        )
    lines.append("errors       " + (", ".join(f"{k} {v}" for k, v in results["errors"].items()) or "none"))
    g = results.get("load_generator") or {}
    if g:
        per = g.get("cpu_us_per_receipt")
        idle = g.get("machine_idle_publish_phase")
        lines.append(
            f"generator    {g['cpu_s_total']:.1f} CPU-s over {g['processes']} process(es)"
            + (
                f"; publish phase {g['cpu_s_publish_phase']:.1f} CPU-s for {g['receipts_publish_phase']} receipts"
                f" = {per} us per receipt"
                if per is not None
                else ""
            )
            + (f"; machine idle {idle:.0%} during the publish phase" if idle is not None else "")
            + (" -- SATURATED: these figures measure the machine, not the system" if g.get("machine_saturated") else "")
        )

    rows = results["per_publish"]
    if rows:
        shown = rows
        if len(rows) > PER_PUBLISH_LISTED:
            shown = sorted(rows, key=lambda r: (-(r.get("missing") or 0), -(r.get("last_subscriber_ms") or 0)))
            shown = sorted(shown[:10], key=lambda r: r["n"])
            lines.append(f"per publish  (worst 10 of {len(rows)})")
        else:
            lines.append("per publish")
        lines.append("      n  delivered/expected  missing  dup  ooo  left     p50 ms     p99 ms    last ms")
        for r in shown:
            if r.get("excluded"):
                lines.append(f"  {r['n']:5d}  excluded: {r['error']}")
                continue
            lat = r["latency_ms"]
            lines.append(
                f"  {r['n']:5d}  {r['delivered']:>8d}/{r['expected']:<9d} {r['missing']:7d} {r['duplicates']:4d} "
                f"{r['out_of_order']:4d} {r['interrupted']:5d} {lat.get('p50', float('nan')):10.1f} "
                f"{lat.get('p99', float('nan')):10.1f} {r['last_subscriber_ms'] or float('nan'):10.1f}"
            )
    for check in results.get("objectives", []):
        verdict = "PASS" if check["passed"] else "FAIL"
        lines.append(f"objective    {check['objective']} {check['target']}: {verdict} (actual {check['actual']})")
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, results: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def write_summary(out_dir: Path, text: str) -> Path:
    path = out_dir / "summary.txt"
    path.write_text(text)
    return path


def write_receipts(out_dir: Path, raw) -> Path:
    """Every receipt, for digging: subscriber, publish n, server seq, seconds after its publish."""
    sent = {p.n: p.t_sent for p in raw.publishes}
    path = out_dir / "receipts.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        out = csv.writer(f)
        out.writerow(["subscriber", "n", "seq", "latency_s"])
        for result in raw.workers.values():
            if "receipts" in result:
                for s, n, t, seq in zip(*result["receipts"], strict=True):
                    out.writerow([s, n, seq, f"{t - sent.get(n, t):.6f}"])
    return path
