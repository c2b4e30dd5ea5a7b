"""From raw observations to the numbers: who should have received what, who did, how fast.

Definitions (they are the contract of the report):
- A subscriber is *eligible* for publish n if its postNotify subscription was sent before the
  publish request (t_sent) and it was still connected at t_sent.
- An eligible subscriber that received n (at any time before the run stopped listening) counts
  as *delivered*; latency = receipt - t_sent. The drain phase gives the last publish `drain`
  seconds; earlier publishes had longer.
- An eligible subscriber that never received n and was still connected at n's deadline
  (t_sent + drain, or the end of the run if that came first) counts as *missing*: a lost (or
  hopelessly late) delivery.
- An eligible subscriber that disconnected before the deadline without receiving n counts as
  *interrupted*: it left, so it is reported as a disconnection, not as a lost delivery.
- expected = delivered + missing;  delivery ratio = delivered / expected.
- A *duplicate* is any further receipt of n by the same subscriber.
- *Out of order*: a subscriber received a notification whose server seq is lower than one it
  had already received.
- A publish whose request failed and which reached nobody is excluded (counted as an error).
"""

from __future__ import annotations

import collections
import time

from hdrh.histogram import HdrHistogram

from postwire_loadtest.run import RawRun
from postwire_loadtest.subscribers import SUB_FIELDS

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
MAX_LISTED = 20  # subscriber indexes listed per publish when some are missing


def new_histogram() -> HdrHistogram:
    # Microseconds from 1 us to 1 h at 3 significant digits.
    return HdrHistogram(1, 3_600_000_000, 3)


def record(hist: HdrHistogram, seconds: float) -> None:
    hist.record_value(max(1, min(3_600_000_000, int(seconds * 1e6))))


def summary_ms(hist: HdrHistogram) -> dict:
    if hist.get_total_count() == 0:
        return {"count": 0}
    out = {"count": hist.get_total_count()}
    for name, pct in PERCENTILES:
        out[name] = round(hist.get_value_at_percentile(pct) / 1000.0, 3)
    out["max"] = round(hist.get_max_value() / 1000.0, 3)
    out["mean"] = round(hist.get_mean_value() / 1000.0, 3)
    return out


def _subs(raw: RawRun) -> list[dict]:
    subs = []
    for result in raw.workers.values():
        for row in result.get("subs", []):
            subs.append(dict(zip(SUB_FIELDS, row, strict=True)))
    subs.sort(key=lambda s: s["index"])
    return subs


def analyse(raw: RawRun) -> tuple[dict, dict]:
    """Returns (results for JSON, series for the plot)."""
    cfg = raw.cfg
    subs = _subs(raw)
    end = raw.phases.get("drain_end") or raw.phases.get("end") or time.monotonic()
    t0 = raw.phases.get("publish_start", raw.phases.get("start", 0.0))

    # --- receipts: first receipt per (subscriber, publish), duplicates, ordering -------------
    first: dict[tuple[int, int], float] = {}
    duplicates = collections.Counter()
    out_of_order = collections.Counter()
    order_inversions = 0
    receipt_times = []  # every receipt (duplicates too), seconds since publish start
    for result in raw.workers.values():
        if "receipts" not in result:
            continue
        r_sub, r_n, r_t, r_seq = result["receipts"]
        max_seq: dict[int, int] = {}
        max_n: dict[int, int] = {}
        for s, n, t, seq in zip(r_sub, r_n, r_t, r_seq, strict=True):
            receipt_times.append(t - t0)
            key = (s, n)
            if key in first:
                duplicates[n] += 1
                continue
            first[key] = t
            if seq < max_seq.get(s, -1):
                out_of_order[n] += 1
            max_seq[s] = max(seq, max_seq.get(s, -1))
            if n < max_n.get(s, 0):
                order_inversions += 1
            max_n[s] = max(n, max_n.get(s, 0))

    # --- per publish -----------------------------------------------------------------------
    overall = new_histogram()
    per_node = collections.defaultdict(lambda: {"expected": 0, "delivered": 0})
    publishes = []
    received_by_n = collections.Counter(n for _, n in first)
    latencies_ms = []
    for p in raw.publishes:
        row = {
            "n": p.n,
            "title": p.title,
            "ok": p.ok,
            "error": p.error,
            "api_node": p.api_node,
            "published_at": p.published_at,
            "sent_s": round(p.t_sent - t0, 4),
            "schedule_lag_ms": round((p.t_sent - p.t_scheduled) * 1000, 3),
            "response_ms": round((p.t_answered - p.t_sent) * 1000, 3),
        }
        if not p.ok and received_by_n[p.n] == 0:
            row.update(excluded=True, expected=0, delivered=0, missing=0, interrupted=0)
            publishes.append(row)
            continue
        deadline = min(p.t_sent + cfg.drain, end)
        hist = new_histogram()
        delivered = missing = interrupted = extra = 0
        missing_subs = []
        last = None
        for s in subs:
            t_sub, t_closed = s["t_subscribed"], s["t_closed"]
            got = first.get((s["index"], p.n))
            eligible = t_sub is not None and t_sub <= p.t_sent and (t_closed is None or t_closed > p.t_sent)
            if not eligible:
                extra += got is not None
                continue
            node = per_node[s["node"] or "unknown"]
            if got is not None:
                delivered += 1
                node["expected"] += 1
                node["delivered"] += 1
                latency = got - p.t_sent
                record(hist, latency)
                record(overall, latency)
                latencies_ms.append(latency * 1000)
                last = latency if last is None else max(last, latency)
            elif t_closed is not None and t_closed < deadline:
                interrupted += 1
            else:
                missing += 1
                node["expected"] += 1
                if len(missing_subs) < MAX_LISTED:
                    missing_subs.append({"subscriber": s["index"], "node": s["node"]})
        expected = delivered + missing
        row.update(
            expected=expected,
            delivered=delivered,
            missing=missing,
            interrupted=interrupted,
            duplicates=duplicates[p.n],
            out_of_order=out_of_order[p.n],
            not_eligible_receipts=extra,
            ratio=round(delivered / expected, 6) if expected else None,
            latency_ms=summary_ms(hist),
            last_subscriber_ms=round(last * 1000, 3) if last is not None else None,
            complete=expected > 0 and delivered == expected,
        )
        if missing_subs:
            row["missing_subscribers"] = missing_subs
        publishes.append(row)

    measured = [r for r in publishes if not r.get("excluded")]
    expected = sum(r["expected"] for r in measured)
    delivered = sum(r["delivered"] for r in measured)
    lasts = new_histogram()
    for r in measured:
        if r["last_subscriber_ms"] is not None:
            record(lasts, r["last_subscriber_ms"] / 1000)

    # --- connections -------------------------------------------------------------------------
    connect = new_histogram()
    nodes = collections.Counter()
    protocols = collections.Counter()
    connected = [s for s in subs if s["t_connected"] is not None]
    for s in connected:
        record(connect, s["t_connected"] - s["t_start"])
        nodes[s["node"] or "unknown"] += 1
        protocols[s["protocol"]] += 1
    disconnects = collections.Counter(s["close_reason"] for s in subs if s["t_closed"] is not None)
    sources = sorted({s["source"] for s in connected if s["source"]})

    # --- errors --------------------------------------------------------------------------------
    errors = collections.Counter()
    for result in raw.workers.values():
        errors.update(result.get("errors", {}))
        if result.get("crashed"):
            code = result.get("exitcode")
            errors["worker_crashed" + (f"_exit_{code}" if code is not None else "")] += 1
    for p in raw.publishes:
        if p.error:
            errors[p.error] += 1
    for p in raw.warmup_posts:
        if p.error:
            errors[f"warmup_{p.error}"] += 1
    if raw.timed_out:
        errors["run_timeout"] += 1

    response = new_histogram()
    for p in raw.publishes:
        record(response, p.t_answered - p.t_sent)
    live = sum(1 for s in connected if s["live"])

    results = {
        "load_generator": generator_cpu(raw, t0, end),
        "tool": "postwire-loadtest",
        "run_id": cfg.run_id,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(raw.phases["start"] + raw.wall_offset)),
        "config": cfg.public_dict(),
        "environment": {
            "nofile_limit": list(raw.nofile),
            "workers": cfg.workers,
            "source_addresses": len(sources),
            "source_address_sample": sources[:5],
        },
        "outcome": {"timed_out": raw.timed_out, "failure": raw.failure},
        "phases": {
            k: {"wall": round(v + raw.wall_offset, 3), "s": round(v - raw.phases["start"], 3)}
            for k, v in raw.phases.items()
        },
        "subscribers": {
            "requested": cfg.subscribers,
            "connected": len(connected),
            "failed": sum(1 for s in subs if s["error"]),
            "never_started": cfg.subscribers - len(subs),
            "protocols": dict(protocols),
            "connect_ms": summary_ms(connect),
            "nodes": dict(sorted(nodes.items())),
            "disconnected": sum(disconnects.values()),
            "disconnect_reasons": dict(disconnects),
            "dropped_by_tool": raw.dropped,
        },
        "warmup": {
            **raw.warmup,
            "live_subscribers": live,
            "not_live": len(connected) - live,
            "note": {
                "publish": "warm-up posts were published until every open subscriber received one",
                "settle": "waited a fixed settle period; nothing confirms the subscriptions were live",
                "none": "no warm-up",
            }[cfg.warmup],
        },
        "publishes": {
            "requested": cfg.publishes,
            "sent": len(raw.publishes),
            "ok": sum(1 for p in raw.publishes if p.ok),
            "failed": sum(1 for p in raw.publishes if not p.ok),
            "excluded": sum(1 for r in publishes if r.get("excluded")),
            "rate": cfg.rate,
            "response_ms": summary_ms(response),
            "max_schedule_lag_ms": max((r["schedule_lag_ms"] for r in publishes), default=0.0),
            "api_nodes": dict(collections.Counter(p.api_node or "unknown" for p in raw.publishes)),
        },
        "deliveries": {
            "expected": expected,
            "delivered": delivered,
            "missing": expected - delivered,
            "ratio": round(delivered / expected, 6) if expected else None,
            "interrupted_by_disconnect": sum(r["interrupted"] for r in measured),
            "duplicates": sum(duplicates.values()),
            "out_of_order": sum(out_of_order.values()),
            "publish_order_inversions": order_inversions,
            "not_eligible_receipts": sum(r.get("not_eligible_receipts", 0) for r in measured),
            "complete_publishes": sum(1 for r in measured if r["complete"]),
            "foreign_notifications": sum(w.get("foreign", 0) for w in raw.workers.values()),
        },
        "latency_ms": summary_ms(overall),
        "last_subscriber_ms": summary_ms(lasts),
        "nodes": {
            k: {
                **v,
                "subscribers": nodes.get(k, 0),
                "ratio": round(v["delivered"] / v["expected"], 6) if v["expected"] else None,
            }
            for k, v in sorted(per_node.items())
        },
        "errors": dict(sorted(errors.items())),
        "per_publish": publishes,
    }
    series = {
        "latencies_ms": latencies_ms,
        "receipt_times_s": receipt_times,
        "publish_times_s": [r["sent_s"] for r in publishes],
        "per_publish": publishes,
        "connect_hist": connect,
    }
    return results, series


SATURATED_IDLE = 0.10  # machine idle below this during the publish phase: figures measure the box


def generator_cpu(raw: RawRun, publish_start: float, drain_end: float) -> dict:
    """The generator's own CPU (coordinator + workers), overall and per receipt in the publish phase,
    and how idle the whole machine was meanwhile. On a small machine the generator competes with
    what it measures; a machine with no idle CPU left makes latency a property of the box."""
    processes = [raw.cpu_marks] + [w.get("cpu_marks", {}) for w in raw.workers.values()]
    total = sum(m.get("end", 0.0) for m in processes)
    phase = [m["drain_end"] - m["publish_start"] for m in processes if "publish_start" in m and "drain_end" in m]
    receipts = 0
    for result in raw.workers.values():
        if "receipts" in result:
            receipts += sum(1 for t in result["receipts"][2] if publish_start <= t <= drain_end)
    out: dict = {"processes": len(processes), "cpu_s_total": round(total, 3)}
    if phase and len(phase) == len(processes):
        cpu = sum(phase)
        out.update(
            cpu_s_publish_phase=round(cpu, 3),
            receipts_publish_phase=receipts,
            cpu_us_per_receipt=round(cpu / receipts * 1e6, 1) if receipts else None,
        )
    marks = raw.machine_marks
    if "publish_start" in marks and "drain_end" in marks:
        (idle0, total0), (idle1, total1) = marks["publish_start"], marks["drain_end"]
        if total1 > total0:
            idle = (idle1 - idle0) / (total1 - total0)
            out.update(machine_idle_publish_phase=round(idle, 3), machine_saturated=idle < SATURATED_IDLE)
    return out
