"""The load tester's numbers, checked against what really happened on a real stack.

Each run is small (tens of subscribers, a handful of publishes) so the whole module stays well
under a minute on two cores; what is checked is every count the tool reports.
"""

import collections
import re

import pytest

from tests.loadtest.faultproxy import FaultProxy

# The lead registers a `loadtest` marker in pytest.ini; until then these run as stack-tier tests.
pytestmark = pytest.mark.loadtest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_small_run_reports_every_delivery_exactly_once(lt_stack, loadtest):
    n_subs, m_pubs = 30, 5
    run = loadtest(
        "-n",
        str(n_subs),
        "-m",
        str(m_pubs),
        "--rate",
        "4",
        "--protocol",
        "mixed",
        "--workers",
        "2",
        "--run-id",
        "small",
        "--min-delivery",
        "1.0",
        "--max-duplicates",
        "0",
        "--max-p99",
        "10s",
        "--idle",
        "1",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    r = run.results
    # The idle window sits between warm-up and the first publish, nothing published in it.
    phases = {name: phase["s"] for name, phase in r["phases"].items()}
    assert phases["warmup_end"] <= phases["idle_start"] < phases["idle_end"] <= phases["publish_start"]
    assert phases["idle_end"] - phases["idle_start"] >= 1.0

    assert r["deliveries"] == {
        **r["deliveries"],
        "expected": n_subs * m_pubs,
        "delivered": n_subs * m_pubs,
        "missing": 0,
        "ratio": 1.0,
        "duplicates": 0,
        "out_of_order": 0,
        "interrupted_by_disconnect": 0,
        "complete_publishes": m_pubs,
    }
    for n in range(1, m_pubs + 1):
        p = run.publish(n)
        assert (p["ok"], p["expected"], p["delivered"], p["missing"]) == (True, n_subs, n_subs, 0)
        assert p["latency_ms"]["count"] == n_subs
        # "time until the last subscriber got it" is the slowest receipt of that publish.
        assert p["last_subscriber_ms"] == pytest.approx(p["latency_ms"]["max"], rel=0.01, abs=0.01)
    lat = r["latency_ms"]
    assert lat["count"] == n_subs * m_pubs
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"] < 10_000

    subs = r["subscribers"]
    assert (subs["requested"], subs["connected"], subs["failed"], subs["disconnected"]) == (n_subs, n_subs, 0, 0)
    assert subs["protocols"] == {"graphql-transport-ws": n_subs // 2, "graphql-ws": n_subs // 2}
    assert subs["connect_ms"]["count"] == n_subs
    # Every subscriber asked its own node; least_conn spreads them over both.
    assert set(subs["nodes"]) == {"ws-1", "ws-2"} and sum(subs["nodes"].values()) == n_subs
    assert sum(v["delivered"] for v in r["nodes"].values()) == n_subs * m_pubs
    assert r["warmup"]["method"] == "publish" and r["warmup"]["live_subscribers"] == n_subs
    assert r["publishes"]["ok"] == m_pubs and r["errors"] == {}
    assert all(c["passed"] for c in r["objectives"]) and len(r["objectives"]) == 3

    # The sockets really came from several loopback source addresses (nginx saw them).
    assert r["environment"]["source_addresses"] > 1
    access_log = (lt_stack.run_dir / "nginx-access.log").read_text()
    ws_sources = {m.group(1) for m in re.finditer(r"^(127\.0\.0\.\d+) .*\"GET /wsgraphql", access_log, re.M)}
    assert len(ws_sources - {"127.0.0.1"}) >= 10

    assert (run.out_dir / "plot.png").read_bytes()[:8] == PNG_MAGIC
    summary = (run.out_dir / "summary.txt").read_text()
    assert "150/150 expected" in summary and summary in run.stdout


def test_subscribers_killed_mid_run_are_disconnections_not_lost_deliveries(loadtest):
    n_subs, m_pubs, killed, after = 30, 6, 10, 3
    run = loadtest(
        "-n",
        str(n_subs),
        "-m",
        str(m_pubs),
        "--rate",
        "4",
        "--run-id",
        "drop",
        "--drop-subscribers",
        str(killed),
        "--drop-after-publish",
        str(after),
        "--min-delivery",
        "1.0",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    subs = run.results["subscribers"]
    assert subs["disconnected"] == killed and subs["dropped_by_tool"] == killed
    assert subs["disconnect_reasons"] == {"dropped_by_tool": killed}

    for n in range(1, m_pubs + 1):
        p = run.publish(n)
        alive = n_subs if n <= after else n_subs - killed
        assert (p["expected"], p["delivered"], p["missing"]) == (alive, alive, 0), p
    d = run.deliveries
    total = after * n_subs + (m_pubs - after) * (n_subs - killed)
    assert (d["expected"], d["delivered"], d["missing"], d["ratio"]) == (total, total, 0, 1.0)
    assert d["duplicates"] == 0


def test_a_swallowed_and_a_duplicated_notification_are_detected(lt_stack, loadtest):
    """Between the tool and nginx, a proxy loses publish 3 for one subscriber and doubles publish 4
    for one subscriber: the tool must count one missing receipt and one duplicate."""
    n_subs, m_pubs = 20, 5
    with FaultProxy("127.0.0.1", lt_stack.port, drop=b'"lt-fault-3"', duplicate=b'"lt-fault-4"') as proxy:
        run = loadtest(
            "-n",
            str(n_subs),
            "-m",
            str(m_pubs),
            "--rate",
            "4",
            "--run-id",
            "fault",
            "--ws-url",
            f"ws://127.0.0.1:{proxy.port}/wsgraphql",
            "--min-delivery",
            "1.0",
            "--drain",
            "3",
        )
    assert len(proxy.dropped) == 1 and len(proxy.duplicated) == 1
    assert run.returncode == 1, run.stdout + run.stderr  # the min-delivery objective is missed

    d = run.deliveries
    assert (d["expected"], d["delivered"], d["missing"], d["duplicates"]) == (100, 99, 1, 1)
    assert d["ratio"] == pytest.approx(0.99)
    third, fourth = run.publish(3), run.publish(4)
    assert (third["expected"], third["delivered"], third["missing"]) == (n_subs, n_subs - 1, 1)
    assert len(third["missing_subscribers"]) == 1 and not third["complete"]
    assert (fourth["delivered"], fourth["duplicates"]) == (n_subs, 1)
    others = collections.Counter(run.publish(n)["missing"] for n in (1, 2, 4, 5))
    assert others == {0: 4}
    assert run.results["subscribers"]["disconnected"] == 0
    assert [c["passed"] for c in run.results["objectives"]] == [False]
    assert "min_delivery 1.0: FAIL" in run.stdout
