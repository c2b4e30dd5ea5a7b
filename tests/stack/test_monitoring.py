"""The monitoring kit (monitoring/) against a real Prometheus (Debian's `prometheus` package)
scraping the local stack: the alert rules load and evaluate, and after a little traffic every
panel of the Grafana dashboard has data."""

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from devstack.proc import Process, free_port, require
from tests.stack.fanout import close_all, open_subscribers, until_live
from tests.support.users import staff_client

pytestmark = pytest.mark.stack

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "prometheus" / "rules.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "postwire.json"


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_rules_and_the_compose_scrape_config_pass_promtool():
    promtool = require("promtool", "apt-get install prometheus")
    rules = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert rules.returncode == 0 and "SUCCESS: 5 rules found" in rules.stdout, rules.stdout + rules.stderr
    config = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(MONITORING / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr


@pytest.fixture(scope="module")
def prometheus(stack):
    binary = require("prometheus", "apt-get install prometheus")
    run_dir = Path(tempfile.mkdtemp(prefix="postwire-prometheus-"))
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": role, "static_configs": [{"targets": [f"127.0.0.1:{n.port}" for n in nodes]}]}
            for role, nodes in (("api", stack.api), ("ws", stack.ws))
        ],
    }
    (run_dir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    process = Process(
        "prometheus",
        [
            binary,
            f"--config.file={run_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={run_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_dir=stack.run_dir,
    ).start()
    try:
        process.wait_for_http(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def query(prometheus: str, expr: str) -> list:
    response = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert response["status"] == "success", response
    return response["data"]["result"]


async def test_every_dashboard_panel_has_data_after_some_traffic(stack, prometheus):
    staff = staff_client(stack.http_url)
    subscribers = await open_subscribers(stack.ws_url, 6)
    try:
        await until_live(subscribers, staff)
        waiting = {f"{title}: {expr}": expr for title, expr in panel_queries()}
        answers = {}
        deadline = time.monotonic() + 60
        while waiting and time.monotonic() < deadline:
            gid, _ = staff.create_post("for the dashboard")
            staff.publish(gid)
            await asyncio.gather(*(s.drain() for s in subscribers))
            for name, expr in list(waiting.items()):
                result = [r for r in query(prometheus, expr) if r["value"][1] != "NaN"]  # NaN: no samples yet
                if result:
                    answers[name] = [r["value"][1] for r in result]
                    del waiting[name]
        assert not waiting, f"no data for: {sorted(waiting)}"
        for name, values in answers.items():
            print(f"\nPANEL | {name} | {values}")
        rules = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"][0]["rules"]
        assert len(rules) == 5 and all(rule["health"] == "ok" for rule in rules), rules
        assert query(prometheus, "min by (check) (postwire_dependency_up)") and all(
            r["value"][1] == "1" for r in query(prometheus, "min by (check) (postwire_dependency_up)")
        )
    finally:
        await close_all(subscribers)
