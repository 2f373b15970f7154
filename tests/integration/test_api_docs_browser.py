"""The API reference at /schema, loaded by headless Chromium from a real server, offline.

Chromium may reach the service and nothing else: every other host name resolves to nothing and
every other request goes to a proxy that does not exist. Every request the page makes is also
recorded from the DevTools performance log, so a page that quietly tried a CDN and fell back
fails too. Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
Selenium drives Debian's chromedriver, never one it would download (Selenium Manager is not run
when the Service names a driver, and SE_OFFLINE forbids it to download should it run at all).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import ServerProcess, free_port, server_env

ASSIGNMENT_PATH = "/experiments/{experiment_id}/assignment/{user_id}"
PAGE_TIMEOUT = 60.0  # Swagger UI renders in about a second; the shared CI box can be slow.


def _chromium_or_skip() -> tuple[str, str]:
    """Paths of Debian's chromium and chromedriver; a skip here, a failure on CI."""
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    problem = None
    if browser is None or driver is None:
        problem = "chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
    else:
        try:
            import selenium  # noqa: F401
        except ImportError:
            problem = "selenium is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)  # .ci/run installs them, so their absence there is a failure
        pytest.skip(problem)
    assert browser is not None and driver is not None
    return browser, driver


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium that can reach 127.0.0.1 only, logging every network request; one
    for the module, as starting it takes seconds."""
    browser, driver_path = _chromium_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    tmp_path = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, as CI runs, Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked for since the last call (the performance log is drained)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


# Schemes that never leave the browser (chrome: is its own start page, drawn before ours).
LOCAL_SCHEMES = {"data", "blob", "about", "chrome"}


def foreign(urls: list[str], server: ServerProcess) -> list[str]:
    """The URLs that would leave the machine for anywhere but the service."""
    own = urlsplit(server.base_url).netloc
    return [
        url
        for url in urls
        if urlsplit(url).scheme not in LOCAL_SCHEMES and urlsplit(url).netloc != own
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``python -m entrypoints serve`` as deployed, on the memory store; one for the module."""
    env = {"PORT": str(free_port()), "DATABASE_URL": "memory://", "CACHE_URL": "memory://"}
    started = ServerProcess(server_env(**env, API_TOKENS="t"), tmp_path_factory.mktemp("docs-server"))
    try:
        started.wait_until_healthy(time.monotonic() + 30)
        yield started
    finally:
        started.stop()


def test_schema_renders_the_operations_with_the_network_cut_off(
    chromium: Any, server: ServerProcess
) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.expected_conditions import (
        visibility_of_element_located as visible,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    requested_urls(chromium)
    chromium.get(f"{server.base_url}/schema")
    wait = WebDriverWait(chromium, PAGE_TIMEOUT)
    try:
        # Drawn by Swagger UI's script from the embedded document: the script and styles loaded.
        title = wait.until(visible((By.CSS_SELECTOR, ".info .title")))
        path = f'.opblock-get .opblock-summary-path[data-path="{ASSIGNMENT_PATH}"]'
        assignment = wait.until(visible((By.CSS_SELECTOR, path)))
    except TimeoutException:
        pytest.fail(
            f"/schema drew no {ASSIGNMENT_PATH} in {PAGE_TIMEOUT:.0f} s; it asked other hosts for"
            f" {foreign(requested_urls(chromium), server)}; console: {chromium.get_log('browser')}"
        )

    assert chromium.title == "Experimentation service"
    assert title.text.startswith("Experimentation service")
    assert assignment.text.replace("\u200b", "") == ASSIGNMENT_PATH  # Swagger UI adds break hints
    # The stylesheet applied: Swagger UI's GET blocks are drawn in its blue.
    block = assignment.find_element(By.XPATH, "ancestor::div[contains(@class, 'opblock-get')]")
    assert block.value_of_css_property("border-top-color") == "rgba(97, 175, 254, 1)"
    urls = requested_urls(chromium)
    assert any(url.endswith("/swagger-ui-bundle.js") for url in urls), urls
    assert foreign(urls, server) == []
    # Nothing failed to load, and no script threw.
    errors = [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_the_browser_would_notice_a_page_that_reaches_out(
    chromium: Any, server: ServerProcess
) -> None:
    """The test above can fail: a request to a CDN is both refused and recorded."""
    chromium.get(f"{server.base_url}/schema")
    requested_urls(chromium)
    outcome = chromium.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('https://cdn.jsdelivr.net/npm/swagger-ui-dist/swagger-ui.css', {mode: 'no-cors'})
            .then(() => done('loaded'), () => done('refused'));"""
    )
    assert outcome == "refused"
    assert foreign(requested_urls(chromium), server) == [
        "https://cdn.jsdelivr.net/npm/swagger-ui-dist/swagger-ui.css"
    ]
