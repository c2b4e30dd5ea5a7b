"""Multi-node fan-out through nginx: every subscriber on every Daphne node, exactly once."""

import asyncio

import pytest

from tests.stack.fanout import close_all, open_subscribers, publish_and_expect, until_live
from tests.support.client import GraphQLHttp

pytestmark = pytest.mark.stack


async def test_subscribers_land_on_all_nodes_and_each_gets_a_publish_once(stack, staff):
    subscribers = await open_subscribers(stack.ws_url, 9)
    try:
        # least_conn spreads 9 sockets over the 3 Daphne nodes; each socket says where it is.
        assert {s.node for s in subscribers} == {"ws-1", "ws-2", "ws-3"}
        await until_live(subscribers, staff)
        await publish_and_expect(subscribers, staff)
    finally:
        await close_all(subscribers)


async def test_publish_served_by_either_gunicorn_reaches_everyone(stack, staff):
    subscribers = await open_subscribers(stack.ws_url, 6)
    try:
        await until_live(subscribers, staff)
        served = set()
        for _ in range(6):
            await publish_and_expect(subscribers, staff)
            served.add(staff.served_by)
            if served == {"api-1", "api-2"}:
                break
            staff.execute("{ me { username } }")  # shift nginx's round robin (create+publish is 2)
        assert served == {"api-1", "api-2"}
    finally:
        await close_all(subscribers)


@pytest.mark.parametrize("who", ["anonymous", "not staff", "staff without permission"])
async def test_unauthorised_publish_is_an_error_and_notifies_no_one(stack, staff, make_user, who):
    subscribers = await open_subscribers(stack.ws_url, 3)
    try:
        await until_live(subscribers, staff)
        gid, _ = staff.create_post("not for you")
        attacker = GraphQLHttp(stack.http_url)
        if who != "anonymous":
            attacker.login(*make_user(staff=who != "not staff", perm=who == "not staff"))
        result = attacker.publish(gid)
        payload = result["data"]["publishPost"]
        assert payload["__typename"] == "OperationInfo", result
        assert payload["messages"][0]["kind"] == "PERMISSION"
        still_draft = staff.execute("query($id: ID!) { post(id: $id) { published } }", {"id": gid})
        assert still_draft["data"]["post"]["published"] is False
        # The next thing any subscriber hears is a legitimate publish, nothing before it.
        await publish_and_expect(subscribers, staff, title="after the refusal")
    finally:
        await close_all(subscribers)


async def test_publishing_twice_notifies_once(stack, staff):
    subscribers = await open_subscribers(stack.ws_url, 3)
    try:
        await until_live(subscribers, staff)
        first = await publish_and_expect(subscribers, staff)
        again = staff.publish(first["gid"])
        assert again["data"]["publishPost"]["__typename"] == "Post"
        await publish_and_expect(subscribers, staff, title="the next one")
    finally:
        await close_all(subscribers)


async def test_csrf_is_required_for_cookie_authenticated_mutations(stack, staff):
    gid, _ = staff.create_post("csrf")
    response = staff.session.post(
        f"{stack.http_url}/graphql",
        json={"query": "mutation($id: ID!) { publishPost(input: {id: $id}) { __typename } }", "variables": {"id": gid}},
        timeout=10,
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["errors"][0]["message"]
    still_draft = staff.execute("query($id: ID!) { post(id: $id) { published } }", {"id": gid})
    assert still_draft["data"]["post"]["published"] is False


async def test_malformed_requests_get_clear_errors_and_the_service_stays_up(stack, staff):
    bad_id = staff.publish("not-a-global-id")
    assert bad_id.get("errors") or bad_id["data"]["publishPost"]["__typename"] == "OperationInfo"
    syntax = staff.execute("mutation { publishPost(input: {id: ")
    assert syntax["errors"][0]["message"]
    too_big = staff.session.post(
        f"{stack.graphql_url}", data=b"x" * (2 * 1024 * 1024), headers={"X-CSRFToken": staff.csrf_token()}, timeout=10
    )
    assert too_big.status_code == 413
    # Still serving.
    subscribers = await open_subscribers(stack.ws_url, 1)
    try:
        await until_live(subscribers, staff)
    finally:
        await close_all(subscribers)


async def test_node_metrics_count_live_subscriptions(stack, staff):
    import requests

    def live(node):
        text = requests.get(f"{node.base_url}/metrics", timeout=5).text
        line = next(line for line in text.splitlines() if line.startswith("postwire_live_subscriptions "))
        return float(line.split()[1])

    before = {n.name: live(n) for n in stack.ws}
    subscribers = await open_subscribers(stack.ws_url, 6)
    try:
        await until_live(subscribers, staff)
        opened = {n.name: sum(1 for s in subscribers if s.node == n.name) for n in stack.ws}
        await asyncio.sleep(0.2)
        assert {n.name: live(n) - before[n.name] for n in stack.ws} == opened
    finally:
        await close_all(subscribers)
