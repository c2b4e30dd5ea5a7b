"""One PNG per run: latency distribution, per-publish latency, and deliveries over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in containers and CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

PLAIN = FuncFormatter(lambda value, _: f"{value:g}")  # 30 rather than 3x10^1 on log axes


def plot(results: dict, series: dict, path: Path) -> Path:
    fig, (ax_hist, ax_pub, ax_time) = plt.subplots(3, 1, figsize=(10, 11))
    d = results["deliveries"]
    ratio = "n/a" if d["ratio"] is None else f"{d['ratio']:.4f}"
    fig.suptitle(
        f"postwire-loadtest {results['run_id']}: {results['subscribers']['connected']} subscribers, "
        f"{results['publishes']['ok']} publishes at {results['publishes']['rate']:g}/s; "
        f"delivered {d['delivered']}/{d['expected']} ({ratio})",
        fontsize=11,
    )

    # 1. Latency distribution (log x: fan-out tails span orders of magnitude).
    lat = np.asarray(series["latencies_ms"], dtype=float)
    if lat.size:
        lo, hi = max(lat.min(), 0.1), max(lat.max(), 1.0)
        bins = np.logspace(np.log10(lo), np.log10(hi * 1.01), 60)
        ax_hist.hist(lat, bins=bins, color="tab:blue", alpha=0.8)
        ax_hist.set_xscale("log")
        ax_hist.xaxis.set_major_formatter(PLAIN)
        ax_hist.xaxis.set_minor_formatter(PLAIN)
        for name, style in (("p50", ":"), ("p99", "--"), ("max", "-")):
            value = results["latency_ms"].get(name)
            if value:
                ax_hist.axvline(value, color="black", linestyle=style, linewidth=1, label=f"{name} {value:.1f} ms")
        ax_hist.legend(loc="upper right", fontsize=8)
    ax_hist.set_title("latency: just before the publish request -> receipt (all deliveries)", fontsize=10)
    ax_hist.set_xlabel("ms")
    ax_hist.set_ylabel("deliveries")

    # 2. Per publish: median, p99, and the last subscriber.
    rows = [r for r in series["per_publish"] if not r.get("excluded") and r["latency_ms"].get("count")]
    if rows:
        x = [r["sent_s"] for r in rows]
        ax_pub.plot(x, [r["latency_ms"]["p50"] for r in rows], "o-", markersize=3, label="p50")
        ax_pub.plot(x, [r["latency_ms"]["p99"] for r in rows], "o-", markersize=3, label="p99")
        ax_pub.plot(x, [r["last_subscriber_ms"] for r in rows], "o-", markersize=3, label="last subscriber")
        incomplete = [r for r in rows if not r["complete"]]
        if incomplete:
            ax_pub.scatter(
                [r["sent_s"] for r in incomplete],
                [r["last_subscriber_ms"] for r in incomplete],
                marker="x",
                color="red",
                zorder=3,
                label="incomplete publish",
            )
        ax_pub.set_yscale("log")
        ax_pub.yaxis.set_major_formatter(PLAIN)
        ax_pub.yaxis.set_minor_formatter(PLAIN)
        ax_pub.legend(loc="upper right", fontsize=8)
    ax_pub.set_title("per publish latency", fontsize=10)
    ax_pub.set_xlabel("publish time (s since first publish)")
    ax_pub.set_ylabel("ms")

    # 3. Deliveries over time, with publish instants.
    times = np.asarray(series["receipt_times_s"], dtype=float)
    if times.size:
        span = max(times.max(), 1e-3)
        width = max(0.01, span / 300)
        bins = np.arange(min(times.min(), 0.0), span + width, width)
        ax_time.hist(times, bins=bins, color="tab:green")
    for t in series["publish_times_s"]:
        ax_time.axvline(t, color="grey", linewidth=0.5, alpha=0.6)
    ax_time.set_title("deliveries over time (grey lines: publish requests)", fontsize=10)
    ax_time.set_xlabel("s since first publish")
    ax_time.set_ylabel("deliveries per bin")

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
