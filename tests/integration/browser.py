"""Headless Chromium for the page tests, offline: Debian's chromium and chromedriver.

Chromium may reach the service and nothing else: every other host name resolves to nothing and
every other request goes to a proxy that does not exist. Every request a page makes is also
recorded from the DevTools performance log, so a page that quietly tried a CDN and fell back
fails too. Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
Selenium drives Debian's chromedriver, never one it would download (Selenium Manager is not run
when the Service names a driver, and SE_OFFLINE forbids it to download should it run at all).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import ServerProcess

PAGE_TIMEOUT = 60.0  # a page renders in about a second; the shared CI box can be slow.


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
