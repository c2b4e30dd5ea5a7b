"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver (same version as
the browser; nothing is downloaded: Selenium Manager is not consulted when both paths are given)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # root in CI: Chromium's sandbox refuses to run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    "--window-size=1400,900",
]


def why_no_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is missing: pip install -r tests/compose/requirements.txt"
    missing = [name for name in ("chromium", "chromedriver") if not shutil.which(name)]
    if missing:
        return (
            f"{' and '.join(missing)} not found: apt-get install -y chromium chromium-driver "
            f"(Debian packages; nothing is downloaded at run time)"
        )
    return None


@contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach out
    profile = tempfile.mkdtemp(prefix="postwire-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class GraphiQLPage:
    """The GraphiQL page at /graphql, operated as a user would: type into the editor, press run."""

    EDITOR = ".graphiql-query-editor .CodeMirror"

    def __init__(self, browser, url: str):
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser = browser
        self.wait = WebDriverWait
        browser.get(url)
        self.wait(browser, 60).until(lambda b: self._find(self.EDITOR))

    def _find(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.browser.find_element(By.CSS_SELECTOR, selector)

    def type(self, operation: str) -> None:
        """Replace the editor's text by typing. insertText is what an input method does:
        CodeMirror's bracket auto-closing only reacts to key presses."""
        import urllib.parse

        self._find(self.EDITOR).click()
        self.browser.execute_script(f"document.querySelector('{self.EDITOR}').CodeMirror.execCommand('selectAll')")
        self.browser.execute_cdp_cmd("Input.insertText", {"text": operation})
        typed = self.browser.execute_script(f"return document.querySelector('{self.EDITOR}').CodeMirror.getValue()")
        assert typed == operation, typed
        # GraphiQL parses the editor after a debounce, and decides by that parse whether an
        # operation goes over the WebSocket: run only once it has (strawberry's page then
        # mirrors the editor into ?q=).
        self.wait(self.browser, 10).until(
            lambda b: urllib.parse.parse_qs(urllib.parse.urlsplit(b.current_url).query).get("q", [""])[0] == operation
        )

    def run(self) -> None:
        self._find(".graphiql-execute-button").click()

    def result(self) -> str:
        return self._find(".result-window").text

    def execute(self, operation: str, timeout: float = 15) -> dict:
        """Type and run a query or mutation; its JSON result."""
        import json

        before = self.result()
        self.type(operation)
        self.run()
        self.wait(self.browser, timeout).until(lambda b: self.result() not in ("", before))
        return json.loads(self.result())
