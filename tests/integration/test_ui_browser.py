"""The results pages in headless Chromium against a real server on SQLite and PostgreSQL,
offline (tests/integration/browser.py): sign in with a read key, the list, an experiment with
data whose numbers equal the API's, the bars drawn, no console error, no request to another
host, a phone's width; an admin's pause with its confirmation; the forms refused to a key
without the scope. Screenshots of every page go to ``test-output/ui/`` at the repo root."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.browser import PAGE_TIMEOUT, chromium, foreign, requested_urls
from tests.integration.conftest import REPO_ROOT, ServerProcess, free_port, server_env

__all__ = ["chromium"]  # the fixture, imported for pytest to find

SCREENSHOTS = REPO_ROOT / "test-output" / "ui"
ADMIN = {"Authorization": "Bearer t"}


class Seeded:
    def __init__(self, server: ServerProcess, experiment_id: str, keys: dict[str, str], label: str) -> None:
        self.server, self.experiment_id, self.keys, self.label = server, experiment_id, keys, label

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.server.base_url}{path}", params=params, headers=ADMIN, timeout=30)
        answer.raise_for_status()
        return answer.json()


def _seed(base_url: str) -> tuple[str, dict[str, str]]:
    """Three variants, 900 users (each with a platform but one in ten), purchases with values;
    keys of each kind."""
    with httpx.Client(base_url=base_url, headers=ADMIN, timeout=30) as client:
        experiment = client.post(
            "/experiments",
            json={
                "name": "Checkout button colour",
                "primary_event_type": "purchase",
                "variants": [
                    {"name": "control", "traffic_percentage": 34},
                    {"name": "green", "traffic_percentage": 33},
                    {"name": "orange", "traffic_percentage": 33},
                ],
                "analysis": {"dimensions": ["platform"]},
            },
        ).json()
        chance = {"control": 0.10, "green": 0.16, "orange": 0.07}
        rng = random.Random(7)
        events = []
        for n in range(900):
            user = f"user-{n}"
            attributes = {} if n % 10 == 0 else {"platform": ("ios", "android", "web")[n % 3]}
            variant = client.post(
                f"/experiments/{experiment['id']}/assignment/{user}", json={"attributes": attributes}
            ).json()["variant_name"]
            if rng.random() < chance[variant]:
                events.append(
                    {"event_id": f"ui-{n}", "experiment_id": experiment["id"], "user_id": user,
                     "event_type": "purchase", "value": round(rng.uniform(5, 60), 2)}
                )
        assert client.post("/events", json={"events": events}).status_code in (200, 202)
        keys = {
            scope: client.post("/keys", json={"name": f"{scope} person", "scopes": [scope]}).json()["key"]
            for scope in ("read", "admin", "ingest")
        }
    return experiment["id"], keys


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    directory = tmp_path_factory.mktemp(f"ui-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_databases").create()
    env = server_env(PORT=str(free_port()), DATABASE_URL=url, CACHE_URL="memory://", API_TOKENS="t")
    server = ServerProcess(env, directory)
    try:
        server.wait_until_healthy(time.monotonic() + 60)
        experiment_id, keys = _seed(server.base_url)
        yield Seeded(server, experiment_id, keys, request.param)
    finally:
        server.stop()


def _screenshot(driver: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def _sign_in(driver: Any, base_url: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base_url}/ui/")  # no session: sent to the form
    assert driver.current_url == f"{base_url}/ui/sign-in"
    driver.find_element(By.ID, "api_key").send_keys(key)
    _click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]"))


def _click_and_wait(driver: Any, button: Any) -> None:
    """Click a form's button or a link and wait for the page it leads to: the old page's
    element is gone, and the new document has loaded."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def gone(_: Any) -> bool:
        try:
            button.is_enabled()
        except WebDriverException:
            # Stale, or (while the document is being replaced) "Node with given id does not
            # belong to the document": either way the old page is gone.
            return True
        return False

    button.click()
    wait = WebDriverWait(driver, PAGE_TIMEOUT)
    wait.until(gone)
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def _as_the_browser(driver: Any) -> httpx.Client:
    """A client holding the browser's cookies: the pages' scripts may fetch nothing (their
    Content-Security-Policy says so), so a download or a forged post is made from here."""
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    return httpx.Client(cookies=cookies, timeout=30)


def _severe(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _figure(text: str) -> float | None:
    return None if text == "" else float(text)


def test_a_read_key_sees_the_apis_numbers_drawn_offline(chromium: Any, seeded: Seeded) -> None:
    from selenium.webdriver.common.by import By

    base = seeded.server.base_url
    chromium.set_window_size(1280, 900)
    requested_urls(chromium)
    chromium.get_log("browser")
    _sign_in(chromium, base, seeded.keys["read"])
    assert chromium.current_url == f"{base}/ui/experiments"
    _screenshot(chromium, f"{seeded.label}-list")

    results = seeded.api(f"/experiments/{seeded.experiment_id}/results")
    row = chromium.find_element(By.CSS_SELECTOR, f'#experiments tr[data-experiment-id="{seeded.experiment_id}"]')
    assert int(row.find_element(By.CSS_SELECTOR, "[data-users]").get_attribute("data-users")) == 900
    assert results["summary"]["total_users"] == 900
    page_lifts = [_figure(e.get_attribute("data-relative-lift")) for e in row.find_elements(By.CSS_SELECTOR, "[data-relative-lift]")]
    assert page_lifts == [c["relative_lift"] for c in results["comparisons"]]

    _click_and_wait(chromium, row.find_element(By.LINK_TEXT, "Checkout button colour"))
    assert chromium.current_url == f"{base}/ui/experiments/{seeded.experiment_id}"
    _screenshot(chromium, f"{seeded.label}-experiment")
    comparisons = {c["variant_id"]: c for c in results["comparisons"]}
    for variant in results["variants"]:
        tr = chromium.find_element(By.CSS_SELECTOR, f'#variants tr[data-variant-id="{variant["variant_id"]}"]')
        cell = {td.get_attribute("data-field"): td for td in tr.find_elements(By.CSS_SELECTOR, "td[data-field]")}
        assert int(cell["users"].get_attribute("data-value")) == variant["users"]
        assert cell["users"].text == f'{variant["users"]:,}'
        assert int(cell["conversions"].get_attribute("data-value")) == variant["primary_unique_users"]
        assert _figure(cell["rate"].get_attribute("data-value")) == variant["primary_conversion_rate"]
        assert cell["rate"].text == f'{variant["primary_conversion_rate"] * 100:.2f}%'
        comparison = comparisons.get(variant["variant_id"])
        if comparison is None:  # the control: no lift, no bar
            assert tr.find_elements(By.CSS_SELECTOR, "svg.interval") == []
            continue
        test = comparison
        assert _figure(cell["relative_lift"].get_attribute("data-value")) == test["relative_lift"]
        assert _figure(cell["p_value"].get_attribute("data-value")) == test["p_value"]
        assert _figure(cell["p_value_adjusted"].get_attribute("data-value")) == comparison["p_value_adjusted"]
        interval = test["confidence_interval"]
        assert _figure(cell["interval"].get_attribute("data-lower")) == interval["lower"]
        assert _figure(cell["interval"].get_attribute("data-upper")) == interval["upper"]
        # The bar: drawn, named for a screen reader, coloured by which side of 0 it lies on.
        bar = tr.find_element(By.CSS_SELECTOR, "svg.interval")
        assert bar.get_attribute("role") == "img" and variant["variant_name"] in bar.get_attribute("aria-label")
        expected_tone = "good" if interval["lower"] > 0 else "bad" if interval["upper"] < 0 else "neutral"
        assert bar.get_attribute("data-tone") == expected_tone
        assert bar.find_element(By.CSS_SELECTOR, "rect.bar").size["width"] > 0
    assert len(chromium.find_elements(By.CSS_SELECTOR, "#variants svg.interval")) == len(results["comparisons"])
    # The stylesheet applied (the bar's green or red comes from it), served by the service.
    assert chromium.find_element(By.CSS_SELECTOR, "header.top").value_of_css_property("background-color") == "rgba(31, 78, 121, 1)"
    # A read key gets no actions.
    assert chromium.find_elements(By.ID, "actions") == []

    # The same page at a phone's width: nothing wider than the screen but the tables' own scroll.
    chromium.set_window_size(390, 844)
    chromium.refresh()
    width = chromium.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
    _screenshot(chromium, f"{seeded.label}-experiment-phone")
    chromium.set_window_size(1280, 900)

    urls = requested_urls(chromium)
    assert any(url.endswith("/ui.css") for url in urls), urls
    assert foreign(urls, seeded.server) == []
    assert _severe(chromium) == []


def test_the_over_time_page_draws_every_series(chromium: Any, seeded: Seeded) -> None:
    from selenium.webdriver.common.by import By

    base = seeded.server.base_url
    _sign_in(chromium, base, seeded.keys["read"])
    chromium.get(f"{base}/ui/experiments/{seeded.experiment_id}")
    requested_urls(chromium)
    chromium.get_log("browser")
    _click_and_wait(chromium, chromium.find_element(By.ID, "over-time-link"))
    series = seeded.api(f"/experiments/{seeded.experiment_id}/results/timeseries")
    variants = len(series["points"][0]["variants"])
    rate = chromium.find_element(By.CSS_SELECTOR, "#rate-chart svg")
    lift = chromium.find_element(By.CSS_SELECTOR, "#lift-chart svg")
    assert len(rate.find_elements(By.CSS_SELECTOR, "polyline.series")) == variants
    assert len(lift.find_elements(By.CSS_SELECTOR, "polyline.series")) == variants - 1
    assert len(lift.find_elements(By.CSS_SELECTOR, "polygon.band")) == variants - 1
    chance = chromium.find_element(By.CSS_SELECTOR, "#chance-chart svg")
    assert len(chance.find_elements(By.CSS_SELECTOR, "polyline.series")) == variants - 1
    since = chromium.find_element(By.CSS_SELECTOR, "#exposure-chart svg")
    assert len(since.find_elements(By.CSS_SELECTOR, "polyline.series")) == variants - 1
    assert rate.size["width"] > 0 and rate.size["height"] > 0
    rows = chromium.find_elements(By.CSS_SELECTOR, "#over-time tbody tr")
    assert len(rows) == len(series["points"])
    _screenshot(chromium, f"{seeded.label}-over-time")
    assert foreign(requested_urls(chromium), seeded.server) == []
    assert _severe(chromium) == []


def test_the_breakdown_tab_shows_the_apis_slices(chromium: Any, seeded: Seeded) -> None:
    from selenium.webdriver.common.by import By

    base = seeded.server.base_url
    chromium.set_window_size(1280, 900)
    _sign_in(chromium, base, seeded.keys["read"])
    chromium.get(f"{base}/ui/experiments/{seeded.experiment_id}")
    requested_urls(chromium)
    chromium.get_log("browser")
    _click_and_wait(chromium, chromium.find_element(By.CSS_SELECTOR, 'a.breakdown-link[data-dimension="platform"]'))
    assert chromium.current_url == f"{base}/ui/experiments/{seeded.experiment_id}/breakdown/platform"
    assert chromium.find_element(By.CSS_SELECTOR, "#tabs strong").text == "By platform"
    api = seeded.api(f"/experiments/{seeded.experiment_id}/results/breakdown", dimension="platform")
    # Values by users, then the one user in ten assigned without a platform.
    assert [s["kind"] for s in api["slices"]] == ["value", "value", "value", "unknown"]
    assert sum(s["users"] for s in api["slices"]) == 900
    headings = chromium.find_elements(By.CSS_SELECTOR, "h2.slice")
    assert [h.text.split(" · ")[0] for h in headings] == [s["value"] or "unknown (no value)" for s in api["slices"]]
    assert [int(h.find_element(By.CSS_SELECTOR, '[data-field="slice-users"]').get_attribute("data-value"))
            for h in headings] == [s["users"] for s in api["slices"]]
    tables = chromium.find_elements(By.CSS_SELECTOR, "table.slice-table")
    assert [t.get_attribute("data-kind") for t in tables] == [s["kind"] for s in api["slices"]]
    zeros = set()
    for table, s in zip(tables, api["slices"], strict=True):
        comparisons = {c["variant_id"]: c for c in s["comparisons"]}
        for variant in s["variants"]:
            tr = table.find_element(By.CSS_SELECTOR, f'tr[data-variant-id="{variant["variant_id"]}"]')
            cell = {td.get_attribute("data-field"): td for td in tr.find_elements(By.CSS_SELECTOR, "td[data-field]")}
            assert int(cell["users"].get_attribute("data-value")) == variant["users"]
            assert cell["users"].text == f'{variant["users"]:,}'
            assert int(cell["conversions"].get_attribute("data-value")) == variant["conversions"]
            assert _figure(cell["rate"].get_attribute("data-value")) == variant["conversion_rate"]
            assert cell["rate"].text == f'{variant["conversion_rate"] * 100:.2f}%'
            comparison = comparisons.get(variant["variant_id"])
            if comparison is None:
                assert tr.find_elements(By.CSS_SELECTOR, "svg.interval") == []
                continue
            assert _figure(cell["relative_lift"].get_attribute("data-value")) == comparison["relative_lift"]
            assert _figure(cell["p_value"].get_attribute("data-value")) == comparison["p_value"]
            adjusted = cell["p_value_adjusted_across_slices"].get_attribute("data-value")
            assert _figure(adjusted) == comparison["p_value_adjusted_across_slices"]
            assert cell["p_value_adjusted_across_slices"].text == f"{comparison['p_value_adjusted_across_slices']:.4f}"
            interval = comparison["confidence_interval"]
            assert _figure(cell["interval"].get_attribute("data-lower")) == interval["lower"]
            assert _figure(cell["interval"].get_attribute("data-upper")) == interval["upper"]
            bar = tr.find_element(By.CSS_SELECTOR, "svg.interval")
            assert bar.get_attribute("role") == "img" and variant["variant_name"] in bar.get_attribute("aria-label")
            expected_tone = "good" if interval["lower"] > 0 else "bad" if interval["upper"] < 0 else "neutral"
            assert bar.get_attribute("data-tone") == expected_tone
            assert bar.find_element(By.CSS_SELECTOR, "rect.bar").size["width"] > 0
            zeros.add(bar.find_element(By.CSS_SELECTOR, "line.zero").get_attribute("x1"))
        # One bar per variant compared with the control, in every slice.
        assert len(table.find_elements(By.CSS_SELECTOR, "svg.interval")) == len(s["comparisons"]) == 2
    assert len(zeros) == 1, zeros  # every slice's bars on one axis
    assert "p (across slices)" in chromium.find_element(By.ID, "across-note").text
    # The whole page in one picture: every slice.
    height = chromium.execute_script("return document.documentElement.scrollHeight")
    chromium.set_window_size(1280, min(height + 140, 4000))
    _screenshot(chromium, f"{seeded.label}-breakdown")

    # A phone's width: the page fits; each table scrolls inside its own box, bars and all.
    chromium.set_window_size(390, 844)
    chromium.refresh()
    width = chromium.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width
    first = chromium.find_element(By.CSS_SELECTOR, "table.slice-table")
    box = chromium.execute_script("const b = arguments[0].parentElement; return [b.clientWidth, b.scrollWidth]", first)
    assert box[0] <= 390 and box[1] >= box[0], box
    assert all(b.size["width"] > 0 for b in chromium.find_elements(By.CSS_SELECTOR, "table.slice-table svg.interval"))
    chromium.execute_script("arguments[0].scrollIntoView()", chromium.find_elements(By.CSS_SELECTOR, "h2.slice")[0])
    _screenshot(chromium, f"{seeded.label}-breakdown-phone")
    chromium.set_window_size(1280, 900)

    # The CSV link holds every slice's rows, as the page shows them.
    with _as_the_browser(chromium) as client:
        answer = client.get(chromium.find_element(By.ID, "download-csv").get_attribute("href"))
    assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
    lines = answer.text.strip().splitlines()
    assert lines[0].startswith("dimension,slice_kind,slice,variant_id")
    assert len(lines) == 1 + sum(len(s["variants"]) for s in api["slices"])
    assert foreign(requested_urls(chromium), seeded.server) == []
    assert _severe(chromium) == []


def test_downloads_are_what_the_page_shows(chromium: Any, seeded: Seeded) -> None:
    """The CSV and JSON links, fetched with the page's session as a person's click would."""
    from selenium.webdriver.common.by import By

    base = seeded.server.base_url
    _sign_in(chromium, base, seeded.keys["read"])
    chromium.get(f"{base}/ui/experiments/{seeded.experiment_id}?method=sequential")
    fetched = {}
    with _as_the_browser(chromium) as client:
        for link in ("download-csv", "download-json"):
            answer = client.get(chromium.find_element(By.ID, link).get_attribute("href"))
            assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
            fetched[link] = answer.text
    api = seeded.api(f"/experiments/{seeded.experiment_id}/results", method="sequential")
    downloaded = json.loads(fetched["download-json"])
    assert downloaded["variants"] == api["variants"] and downloaded["comparisons"] == api["comparisons"]
    lines = fetched["download-csv"].strip().splitlines()
    assert lines[0].startswith("variant_id,variant_name,is_control,users,conversions")
    assert len(lines) == 1 + len(api["variants"])
    sequences = {c["variant_id"]: c["sequential"]["confidence_interval"] for c in api["comparisons"]}
    for line in lines[1:]:
        cells = line.split(",")
        if cells[0] in sequences:  # the page draws the sequence under method=sequential
            assert float(cells[11]) == sequences[cells[0]]["lower"]
            assert float(cells[12]) == sequences[cells[0]]["upper"]
    assert _severe(chromium) == []


def test_an_admin_pauses_after_confirming_and_the_audit_names_the_key(chromium: Any, seeded: Seeded) -> None:
    from selenium.webdriver.common.by import By

    base = seeded.server.base_url
    _sign_in(chromium, base, seeded.keys["admin"])
    chromium.get(f"{base}/ui/experiments/{seeded.experiment_id}")
    _click_and_wait(chromium, chromium.find_element(By.CSS_SELECTOR, '#actions button[data-action="paused"]'))
    assert chromium.find_element(By.TAG_NAME, "h1").text.startswith("Pause")
    _screenshot(chromium, f"{seeded.label}-confirm-pause")
    assert seeded.api(f"/experiments/{seeded.experiment_id}")["status"] == "running"  # not before the yes
    _click_and_wait(chromium, chromium.find_element(By.CSS_SELECTOR, "#confirm button[type=submit]"))
    assert chromium.current_url == f"{base}/ui/experiments/{seeded.experiment_id}"
    assert chromium.find_element(By.ID, "status").text == "paused"
    assert seeded.api(f"/experiments/{seeded.experiment_id}")["status"] == "paused"
    trail = seeded.api("/audit", target_id=seeded.experiment_id)
    entries = trail["items"] if isinstance(trail, dict) else trail
    assert any(e["actor"] == "admin person" and e["details"].get("status") for e in entries), entries
    # Resume, so the other tests read a running experiment.
    _click_and_wait(chromium, chromium.find_element(By.CSS_SELECTOR, '#actions button[data-action="running"]'))
    _click_and_wait(chromium, chromium.find_element(By.CSS_SELECTOR, "#confirm button[type=submit]"))
    assert seeded.api(f"/experiments/{seeded.experiment_id}")["status"] == "running"
    # Signing out ends the session: the pages send the browser back to the form.
    _click_and_wait(chromium, chromium.find_element(By.CSS_SELECTOR, "header.top button"))
    chromium.get(f"{base}/ui/experiments")
    assert chromium.current_url == f"{base}/ui/sign-in"
    assert _severe(chromium) == []


def test_the_forms_refuse_a_key_without_the_scope(chromium: Any, seeded: Seeded) -> None:
    from selenium.webdriver.common.by import By

    base = seeded.server.base_url
    _sign_in(chromium, base, seeded.keys["ingest"])
    assert chromium.current_url == f"{base}/ui/sign-in"
    assert "lacks the read scope" in chromium.find_element(By.ID, "sign-in-problem").text
    _screenshot(chromium, f"{seeded.label}-sign-in-refused")
    chromium.get_log("browser")  # the refusal's own 403 is logged by the browser: expected

    # A read key posting the admin's form (as a forged page would): refused, nothing changed.
    _sign_in(chromium, base, seeded.keys["read"])
    chromium.get(f"{base}/ui/experiments/{seeded.experiment_id}")
    csrf = chromium.find_element(By.CSS_SELECTOR, 'header.top input[name="csrf"]').get_attribute("value")
    with _as_the_browser(chromium) as client:
        for token in (csrf, "forged"):
            answer = client.post(
                f"{base}/ui/experiments/{seeded.experiment_id}/status",
                data={"csrf": token, "status": "stopped", "confirm": "yes"},
            )
            assert answer.status_code == 403
            assert answer.headers["content-type"].startswith("text/html")
    assert seeded.api(f"/experiments/{seeded.experiment_id}")["status"] == "running"

