"""docker-compose.yml, brought up by docker-compose 1.29 on a real engine, used through nginx only.

The tests run in file order on one project: healthy topology → fan-out over every replica →
GraphiQL in a browser → the load tester's profile → losing a WebSocket replica → scaling the
WebSocket tier out → teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
import uuid

import pytest
import requests

from tests.compose.project import EXPECTED, REPO, REPORT, ComposeProject, artifact
from tests.stack.fanout import Subscriber, close_all, publish_and_expect, until_live
from tests.support.browser import GraphiQLPage, chromium, why_no_browser
from tests.support.client import POST_NOTIFY, Socket
from tests.support.docker import docker
from tests.support.users import STAFF

pytestmark = pytest.mark.compose

PROTOCOLS = ("graphql-transport-ws", "graphql-ws")


async def subscribe(url: str, index: int) -> Subscriber:
    socket = await Socket.open(url, protocol=PROTOCOLS[index % 2])
    node = await socket.node()
    return Subscriber(socket, await socket.start(POST_NOTIFY), node)


async def subscribe_until_every_node(
    url: str, nodes: set[str], *, at_most: int = 80, deadline: float = 90.0
) -> list[Subscriber]:
    """Open subscribers through nginx until each of `nodes` holds at least one. nginx picks an
    address of the `ws` name at random per connection, so this takes a handful per node."""
    subscribers: list[Subscriber] = []
    start = time.monotonic()
    try:
        while not nodes <= {s.node for s in subscribers}:
            if len(subscribers) >= at_most or time.monotonic() - start > deadline:
                seen = {s.node for s in subscribers}
                raise AssertionError(
                    f"after {len(subscribers)} sockets, nodes {sorted(nodes - seen)} "
                    f"never got one (seen: {sorted(seen)})"
                )
            subscribers.append(await subscribe(url, len(subscribers)))
            if len(subscribers) > 3 * len(nodes):
                await asyncio.sleep(0.5)  # a new replica may not be in nginx's DNS answer yet
    except BaseException:
        await close_all(subscribers)
        raise
    return subscribers


def spread(subscribers: list[Subscriber]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in subscribers:
        counts[s.node] = counts.get(s.node, 0) + 1
    return dict(sorted(counts.items()))


def ws_nodes(compose: ComposeProject) -> dict[str, str]:
    """Running `ws` replicas: serverNode (the container's hostname, the default node name) → container name."""
    return {c.hostname: c.name for c in compose.containers("ws", running_only=True)}


def nginx_identity(compose: ComposeProject) -> list[tuple[str, str, int]]:
    return [(c.id, c.started_at, c.restart_count) for c in compose.containers("nginx")]


def test_stack_is_up_with_its_replicas(compose):
    containers = compose.containers()
    for service, count in EXPECTED.items():
        mine = [c for c in containers if c.service == service]
        assert len(mine) == count, (service, [c.name for c in mine])
    for c in containers:
        if c.service == "migrate":
            assert (c.status, c.exit_code) == ("exited", 0), c
        else:
            assert c.status == "running" and c.health == "healthy", c

    # The published port is the only way in, and both gunicorn replicas answer behind it.
    # nginx picks an address per connection, so use a fresh connection per request.
    api_nodes = {c.hostname for c in compose.containers("api")}
    seen = set()
    for _ in range(40):
        response = requests.get(f"{compose.http_url}/csrf/", headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
        seen.add(response.headers["X-Postwire-Node"])
        if seen == api_nodes:
            break
    assert seen == api_nodes
    assert requests.get(f"{compose.http_url}/healthz", timeout=10).text == "ok\n"
    # Hardening the compose file asks for, as Docker applied it.
    for c in containers:
        if c.service in ("api", "ws", "migrate", "nginx"):
            config = json.loads(docker("inspect", c.id).stdout)[0]
            assert config["HostConfig"]["ReadonlyRootfs"] is True, c.name
            assert config["Config"]["User"] not in ("", "0", "root"), c.name
    for c in containers:  # every long-running service is limited in memory and CPU
        config = json.loads(docker("inspect", c.id).stdout)[0]["HostConfig"]
        assert config["Memory"] > 0 and config["NanoCpus"] > 0, (c.name, config["Memory"], config["NanoCpus"])


async def test_every_ws_replica_delivers_each_publish_once(compose, staff):
    nodes = ws_nodes(compose)
    assert len(nodes) == 3
    subscribers = await subscribe_until_every_node(compose.ws_url, set(nodes))
    try:
        # serverNode is each container's hostname (POSTWIRE_NODE_NAME is not set by compose).
        assert {s.node for s in subscribers} == set(nodes)
        REPORT["ws replicas"] = ", ".join(f"{n}={nodes[n]}" for n in sorted(nodes))
        REPORT["fan-out"] = f"{len(subscribers)} subscribers, per node {spread(subscribers)}"
        await until_live(subscribers, staff)
        for _ in range(2):
            await publish_and_expect(subscribers, staff)
    finally:
        await close_all(subscribers)


def test_graphiql_in_a_headless_browser(compose, staff):
    """The developer's path: GraphiQL subscribed in one tab; the post arrives there whether it is
    published over HTTP or from GraphiQL in a second tab (log in, create, publish)."""
    why = why_no_browser()
    if why:
        pytest.fail(f"the GraphiQL test needs a headless Chromium: {why}", pytrace=False)
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    url = f"{compose.http_url}/graphql"
    with chromium() as browser:
        subscriber = GraphiQLPage(browser, url)
        subscriber.type("subscription { postNotify { title } }")
        subscriber.run()
        # The subscription is live once a publish shows up; publish over HTTP until one does.
        title, attempts = None, 0
        while title is None and attempts < 15:
            attempts += 1
            gid, candidate = staff.create_post(f"from the test {uuid.uuid4().hex[:6]}")
            assert staff.publish(gid)["data"]["publishPost"]["published"]
            try:
                WebDriverWait(browser, 3).until(lambda b, expected=candidate: expected in subscriber.result())
                title = candidate
            except TimeoutException:
                continue
        assert title, f"no notification reached GraphiQL; result pane: {subscriber.result()!r}"
        assert json.loads(subscriber.result()) == {"data": {"postNotify": {"title": title}}}

        first_tab = browser.current_window_handle
        browser.switch_to.new_window("tab")
        publisher = GraphiQLPage(browser, url)
        login = publisher.execute(
            f'mutation {{ login(username: "{STAFF[0]}", password: "{STAFF[1]}") {{ username isStaff }} }}'
        )
        assert login == {"data": {"login": {"username": STAFF[0], "isStaff": True}}}, login
        browser_title = f"from GraphiQL {uuid.uuid4().hex[:6]}"
        created = publisher.execute(
            f'mutation {{ createPost(input: {{title: "{browser_title}", content: "typed in a browser"}}) '
            f"{{ __typename ... on Post {{ id }} ... on OperationInfo {{ messages {{ message }} }} }} }}"
        )
        assert created["data"]["createPost"]["__typename"] == "Post", created
        published = publisher.execute(
            f'mutation {{ publishPost(input: {{id: "{created["data"]["createPost"]["id"]}"}}) '
            f"{{ __typename ... on Post {{ published }} ... on OperationInfo {{ messages {{ message }} }} }} }}"
        )
        assert published["data"]["publishPost"] == {"__typename": "Post", "published": True}, published

        browser.switch_to.window(first_tab)
        WebDriverWait(browser, 15).until(lambda b: browser_title in subscriber.result())
        shot = artifact("compose-graphiql.png")
        browser.save_screenshot(str(shot))
        console = browser.get_log("browser")
        resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    REPORT["graphiql"] = (
        f"subscription live after {attempts} HTTP publish(es); a post published from a "
        f"second GraphiQL tab arrived; screenshot {shot.relative_to(REPO)}"
    )
    # Offline: every script and stylesheet came from the page's own origin (no CDN).
    origin = urllib.parse.urlsplit(compose.http_url).netloc
    foreign = [r for r in resources if urllib.parse.urlsplit(r).netloc not in (origin, "")]
    assert not foreign, foreign
    assert any("/static/graphiql/graphiql-3.8.3/graphiql.min.js" in r for r in resources), resources
    errors = [entry for entry in console if entry.get("level") == "SEVERE"]
    assert not errors, errors


def test_loadtest_profile_runs_against_nginx(compose):
    start = time.monotonic()
    compose.compose("build", "loadtest", profiles=("loadtest",), timeout=1800)
    built = time.monotonic() - start
    start = time.monotonic()
    result = compose.compose(
        "run",
        "--rm",
        "loadtest",
        "-n",
        "30",
        "--duration",
        "3",
        "--rate",
        "2",
        "--min-delivery",
        "1.0",
        profiles=("loadtest",),
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "target       http://nginx:8080" in output, output[-4000:]
    deliveries = next(line for line in output.splitlines() if line.startswith("deliveries"))
    assert "missing 0, duplicates 0" in deliveries, deliveries
    REPORT["loadtest"] = (
        f"build {built:.1f} s, run {time.monotonic() - start:.1f} s: "
        f"{deliveries.split('expected')[0].split()[-1]} delivered"
    )


async def test_stopped_ws_replica_clients_reconnect_elsewhere(compose, staff):
    nodes = ws_nodes(compose)
    assert len(nodes) == 3
    subscribers = await subscribe_until_every_node(compose.ws_url, set(nodes))
    replacements: list[Subscriber] = []
    try:
        await until_live(subscribers, staff)
        victim_node = max(spread(subscribers).items(), key=lambda kv: kv[1])[0]
        victims = [s for s in subscribers if s.node == victim_node]
        survivors = [s for s in subscribers if s.node != victim_node]

        start = time.monotonic()
        docker("stop", nodes[victim_node], timeout=120)
        stopped = time.monotonic() - start
        # Its clients are closed (not left hanging) ...
        await asyncio.wait_for(asyncio.gather(*(s.socket.closed.wait() for s in victims)), 30)
        closed = time.monotonic() - start
        for s in victims:
            kind, _ = await s.next(5)
            assert kind == "closed"
        # ... and the others' are untouched.
        assert not any(s.socket.closed.is_set() for s in survivors)

        # Each client reconnects through nginx, which no longer hands out the stopped replica.
        start = time.monotonic()
        for i in range(len(victims)):
            replacement = await subscribe(compose.ws_url, i)
            replacements.append(replacement)
            assert replacement.node != victim_node and replacement.node in nodes
        reconnected = time.monotonic() - start
        everyone = survivors + replacements
        await until_live(everyone, staff)
        await publish_and_expect(everyone, staff)
        REPORT["replica loss"] = (
            f"stopped {nodes[victim_node]} ({len(victims)} clients) in {stopped:.1f} s; clients closed "
            f"{closed:.1f} s after the stop began, reconnected in {reconnected:.1f} s to {spread(replacements)}"
        )
    finally:
        await close_all(subscribers + replacements)


async def test_scaling_ws_out_is_followed_without_touching_nginx(compose, staff):
    before = ws_nodes(compose)
    nginx_before = nginx_identity(compose)
    api_before = [(c.id, c.started_at) for c in compose.containers("api")]

    # The README's command: only the ws service (--no-deps: the one-shot migrate is not re-run).
    start = time.monotonic()
    compose.compose("up", "-d", "--no-deps", "--no-recreate", "--scale", "ws=4", "ws", timeout=600)
    compose.wait_healthy({**EXPECTED, "ws": 4})
    scaled = time.monotonic() - start
    after = ws_nodes(compose)
    assert len(after) == 4
    # New replicas (and a stopped one `up` started again, possibly at a new address).
    fresh = set(after) - set(before)
    assert fresh, (before, after)

    subscribers = await subscribe_until_every_node(compose.ws_url, set(after))
    try:
        await until_live(subscribers, staff)
        await publish_and_expect(subscribers, staff)
        on_fresh = {n: c for n, c in spread(subscribers).items() if n in fresh}
        assert set(on_fresh) == fresh
    finally:
        await close_all(subscribers)
    # nginx followed the change through Docker's DNS: same container, never restarted.
    assert nginx_identity(compose) == nginx_before
    assert [(c.id, c.started_at) for c in compose.containers("api")] == api_before
    REPORT["scale out"] = (
        f"ws 3 → 4 healthy in {scaled:.1f} s; new/restarted replicas "
        f"{sorted(after[n] for n in fresh)} got {on_fresh} of {len(subscribers)} new subscribers; "
        f"nginx container unchanged"
    )


def test_monitoring_profile_scrapes_every_replica(compose, staff):
    """`--profile monitoring`: Prometheus finds every api and ws replica through Docker's DNS
    (4 ws after the scale-out above) and the dashboard's series arrive. (Grafana's image cannot be
    pulled here; its dashboard's queries are checked against a real Prometheus in the stack tier.)"""
    compose.compose("up", "-d", "--no-deps", "prometheus", profiles=("monitoring",), timeout=300)
    try:
        _check_prometheus(compose, staff)
    finally:  # `down` without the profile would not see it
        compose.compose("rm", "-fsv", "prometheus", profiles=("monitoring",), timeout=120)


def _check_prometheus(compose, staff):
    url = f"http://127.0.0.1:{compose.env['PROMETHEUS_PORT']}"
    replicas = {"api": len(compose.containers("api", running_only=True)), "ws": len(ws_nodes(compose))}
    deadline = time.monotonic() + 90
    up = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, KeyError, ValueError):
            result = requests.get(f"{url}/api/v1/query", params={"query": "sum by (job) (up)"}, timeout=5).json()
            up = {r["metric"]["job"]: int(float(r["value"][1])) for r in result["data"]["result"]}
            if up == replicas:
                break
        time.sleep(1)
    assert up == replicas, (up, replicas)
    gid, _ = staff.create_post("for prometheus")
    staff.publish(gid)
    time.sleep(12)  # two scrapes (every 5 s)
    live = requests.get(
        f"{url}/api/v1/query", params={"query": "postwire_live_subscriptions{job='ws'}"}, timeout=5
    ).json()["data"]["result"]
    assert len(live) == replicas["ws"]
    REPORT["monitoring"] = f"Prometheus scraping {up} (every api and ws replica, found through Docker's DNS)"


def test_down_leaves_nothing_behind(compose):
    artifact("compose-logs.txt").write_text(compose.logs(tail=2000))
    assert compose.leftovers(), "the project should exist before teardown"
    took = compose.down()
    left = compose.leftovers()
    assert not left, f"`down -v --remove-orphans` left {left}"
    REPORT["teardown"] = f"down -v --remove-orphans in {took:.1f} s; no container, network or volume left"
