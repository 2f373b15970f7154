"""The API reference at /schema, loaded by headless Chromium from a real server, offline
(tests/integration/browser.py says how the browser is kept from every other host)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.browser import PAGE_TIMEOUT, chromium, foreign, requested_urls
from tests.integration.conftest import ServerProcess, free_port, server_env

__all__ = ["chromium"]  # the fixture, imported for pytest to find

ASSIGNMENT_PATH = "/experiments/{experiment_id}/assignment/{user_id}"


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
