"""The local stack as a developer meets it: GraphiQL works in a browser, everything listens on
loopback only, and no port comes from the range a load test's client sockets use."""

import urllib.request

import psutil
import pytest

from devstack.proc import _ephemeral_low
from tests.support.browser import GraphiQLPage, chromium, why_no_browser
from tests.support.client import GraphQLHttp

pytestmark = pytest.mark.stack


def test_graphiql_loads_its_assets_and_subscribes_through_the_local_stack(stack):
    why = why_no_browser()
    if why:
        pytest.fail(f"the GraphiQL test needs a headless Chromium: {why}", pytrace=False)
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium() as browser:
        page = GraphiQLPage(browser, f"{stack.http_url}/graphql")  # waits for the editor: JS and CSS loaded
        page.type("subscription { serverNode }")
        page.run()
        WebDriverWait(browser, 20).until(lambda b: '"serverNode": "ws-' in page.result())
        assets = browser.execute_script(
            "return [...document.querySelectorAll('script[src], link[href]')].map(e => e.src || e.href)"
        )
    assert any("/static/" in url for url in assets), assets
    for url in (u for u in assets if u.startswith("http")):
        with urllib.request.urlopen(url, timeout=10) as response:  # a 404 raises
            assert response.status == 200 and response.read(), url


def test_every_process_listens_on_loopback_only_below_the_ephemeral_range(stack):
    low = _ephemeral_low()
    processes = [stack.nginx, *(n.process for n in stack.api + stack.ws)]
    for process in processes:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        listening = {
            (c.laddr.ip, c.laddr.port) for p in tree for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN
        }
        assert listening, process.name
        for ip, port in listening:
            assert ip == "127.0.0.1", (process.name, ip, port)
            assert port < low, (process.name, port, low)


def test_nginx_gives_each_request_an_id_that_the_services_log(stack):
    client = GraphQLHttp(stack.http_url)
    result = client.execute('mutation { login(username: "nobody", password: "wrong") { __typename } }')
    assert result.get("errors") or result["data"]["login"]["__typename"] != "User"
    request_id = client.last_response.headers["X-Request-ID"]
    assert len(request_id) == 32
    served_by = stack.node(client.served_by)  # its log has the refusal, tagged with the id
    assert any(request_id in line and "refused" in line for line in served_by.process.log_path.read_text().splitlines())
