"""The results pages over HTTP, in-process: sign-in and its refusals, the session cookie, CSRF,
the admin's actions and their audit, error pages, headers, downloads, and a scorecard's page
(tests/integration/test_ui_browser.py drives the same pages in Chromium)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from litestar.testing import TestClient

from tests.e2e.helpers import assign, event, results
from tests.e2e.test_scorecards import METRICS, scenario
from tests.factories import create_experiment
from tests.fakes import FakeClock

IDS = "pages"
NO_BEARER = {"Authorization": ""}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def new_key(client: TestClient, *scopes: str, name: str | None = None) -> str:
    answer = client.post("/keys", json={"name": name or f"{'+'.join(scopes)} person", "scopes": list(scopes)})
    assert answer.status_code == 201, answer.text
    return answer.json()["key"]


def sign_in(client: TestClient, key: str) -> TestClient:
    client.cookies.clear()
    form = client.get("/ui/sign-in", headers=NO_BEARER)
    assert form.status_code == 200
    answer = client.post(
        "/ui/sign-in", data={"csrf": csrf_of(form.text), "api_key": key}, headers=NO_BEARER, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/experiments", answer.text
    return client


def page(client: TestClient, path: str, **params: str):
    return client.get(path, params=params, headers=NO_BEARER, follow_redirects=False)


def with_data(client: TestClient, users: int = 400) -> dict:
    experiment = create_experiment(client, "pages", [("control", 50), ("green", 50)], primary="buy")
    batch = []
    for i in range(users):
        variant = assign(client, experiment["id"], f"u{i}").json()["variant_name"]
        if i % 5 == 0 or (variant == "green" and i % 3 == 0):
            batch.append(event(experiment["id"], f"u{i}", "buy", value=10))
    assert client.post("/events", json={"events": batch}).status_code == 202
    return experiment


def test_without_a_session_every_page_sends_to_the_form(client: TestClient) -> None:
    for path in ("/ui/", "/ui/experiments", "/ui/experiments/x", "/ui/experiments/x/results.csv"):
        answer = page(client, path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] in ("/ui/sign-in", "/ui/experiments")
    assert page(client, "/ui/experiments/x/status").status_code in (303, 405)


def test_a_read_key_signs_in_into_an_http_only_cookie_that_holds_no_readable_key(client: TestClient) -> None:
    key = new_key(client, "read")
    form = page(client, "/ui/sign-in")
    answer = client.post(
        "/ui/sign-in", data={"csrf": csrf_of(form.text), "api_key": key}, headers=NO_BEARER, follow_redirects=False
    )
    assert answer.status_code == 303
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("experiments_session="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes
    assert "Path=/ui" in cookie and "samesite=lax" in cookie.lower()
    assert key not in cookie and key not in answer.text
    listing = page(client, "/ui/experiments")
    assert listing.status_code == 200 and "Signed in as <strong>read person</strong>" in listing.text
    assert key not in listing.text
    # The session is for the pages only: the bearer API still wants its header.
    assert client.get("/experiments", headers=NO_BEARER).status_code == 401


@pytest.mark.parametrize(
    ("scopes", "status", "words"),
    [((), 401, "not valid"), (("ingest",), 403, "lacks the read scope"), (("assign",), 403, "lacks the read scope")],
)
def test_a_key_that_may_not_read_is_refused_with_the_reason(
    client: TestClient, scopes: tuple[str, ...], status: int, words: str
) -> None:
    key = new_key(client, *scopes) if scopes else "no-such-key"
    form = page(client, "/ui/sign-in")
    answer = client.post("/ui/sign-in", data={"csrf": csrf_of(form.text), "api_key": key}, headers=NO_BEARER)
    assert answer.status_code == status and words in answer.text
    assert key not in answer.text
    assert page(client, "/ui/experiments").status_code == 303


def test_sign_in_without_the_forms_token_is_refused(client: TestClient) -> None:
    key = new_key(client, "read")
    page(client, "/ui/sign-in")  # the sign-in cookie is set, but the token is not sent back
    for data in ({"api_key": key}, {"api_key": key, "csrf": "guess"}):
        answer = client.post("/ui/sign-in", data=data, headers=NO_BEARER)
        assert answer.status_code == 403 and "out of date" in answer.text
    client.cookies.clear()
    form = client.get("/ui/sign-in", headers=NO_BEARER)
    token = csrf_of(form.text)
    client.cookies.clear()  # a token with no cookie of this service's making
    assert client.post("/ui/sign-in", data={"api_key": key, "csrf": token}, headers=NO_BEARER).status_code == 403


def test_a_changed_cookie_or_a_revoked_key_ends_the_session(
    make_client: Callable[..., TestClient], database_url: str, fake_clock: FakeClock
) -> None:
    client = make_client(database_url, fake_clock, key_cache_ttl_seconds=0)
    key = new_key(client, "read")
    sign_in(client, key)
    session = client.cookies["experiments_session"]
    client.cookies.set("experiments_session", session[:-3] + ("AAA" if not session.endswith("AAA") else "BBB"), path="/ui")
    assert page(client, "/ui/experiments").status_code == 303
    sign_in(client, key)
    assert page(client, "/ui/experiments").status_code == 200
    key_id = client.get("/keys").json()["items"][0]["id"]
    assert client.delete(f"/keys/{key_id}").status_code in (200, 204)
    assert page(client, "/ui/experiments").headers["location"] == "/ui/sign-in"


def test_a_session_lasts_as_configured(
    make_client: Callable[..., TestClient], database_url: str, fake_clock: FakeClock
) -> None:
    client = make_client(database_url, fake_clock, ui_session_hours=1)
    sign_in(client, new_key(client, "read"))
    fake_clock.advance(minutes=59)
    assert page(client, "/ui/experiments").status_code == 200
    fake_clock.advance(minutes=1)
    assert page(client, "/ui/experiments").status_code == 303


def test_pages_carry_a_strict_policy_and_are_not_cached(client: TestClient) -> None:
    sign_in(client, new_key(client, "read"))
    for path in ("/ui/experiments", "/ui/sign-in"):
        headers = page(client, path).headers
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "script-src" not in headers["content-security-policy"]  # no script at all
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        assert headers["content-type"].startswith("text/html")
    stylesheet = re.search(r'href="(/ui/assets/[0-9a-f]+/ui\.css)"', page(client, "/ui/experiments").text)
    assert stylesheet is not None
    asset = page(client, stylesheet.group(1))
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/css")
    assert "immutable" in asset.headers["cache-control"]


def test_errors_are_pages_that_name_the_problem(client: TestClient) -> None:
    sign_in(client, new_key(client, "read"))
    experiment = with_data(client, users=20)
    missing = page(client, "/ui/experiments/nope")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    bad = page(client, f"/ui/experiments/{experiment['id']}", method="maybe", start_date="yesterday")
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    assert "<code>method</code>" in bad.text and "<code>start_date</code>" in bad.text
    # An empty field of the filter form is no filter.
    assert page(client, f"/ui/experiments/{experiment['id']}", start_date="", end_date="", method="").status_code == 200


def test_a_read_key_cannot_change_an_experiment_even_with_the_token(client: TestClient) -> None:
    experiment = with_data(client, users=20)
    sign_in(client, new_key(client, "read"))
    shown = page(client, f"/ui/experiments/{experiment['id']}")
    assert 'id="actions"' not in shown.text
    answer = client.post(
        f"/ui/experiments/{experiment['id']}/status",
        data={"csrf": csrf_of(shown.text), "status": "stopped", "confirm": "yes"},
        headers=NO_BEARER,
    )
    assert answer.status_code == 403 and "admin" in answer.text
    assert client.get(f"/experiments/{experiment['id']}").json()["status"] == "running"


def test_an_admin_confirms_then_the_change_is_made_and_audited_by_the_keys_name(client: TestClient) -> None:
    experiment = with_data(client, users=20)
    sign_in(client, new_key(client, "admin", name="Ada"))
    shown = page(client, f"/ui/experiments/{experiment['id']}")
    assert 'data-action="paused"' in shown.text and 'data-action="stopped"' in shown.text
    token = csrf_of(shown.text)
    url = f"/ui/experiments/{experiment['id']}/status"
    # Without the session's token: refused, nothing changed.
    assert client.post(url, data={"status": "paused", "confirm": "yes"}, headers=NO_BEARER).status_code == 403
    asked = client.post(url, data={"csrf": token, "status": "stopped"}, headers=NO_BEARER)
    assert asked.status_code == 200 and "cannot be undone" in asked.text
    assert client.get(f"/experiments/{experiment['id']}").json()["status"] == "running"
    green = next(v for v in experiment["variants"] if v["name"] == "green")
    done = client.post(
        url,
        data={"csrf": token, "status": "stopped", "confirm": "yes", "winner_variant_id": green["id"]},
        headers=NO_BEARER,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == f"/ui/experiments/{experiment['id']}"
    stopped = client.get(f"/experiments/{experiment['id']}").json()
    assert (stopped["status"], stopped["winner_variant_id"]) == ("stopped", green["id"])
    (entry,) = client.get("/audit", params={"target_id": experiment["id"], "action": "experiment.changed"}).json()["items"]
    assert entry["actor"] == "Ada"
    assert entry["details"]["status"] == {"from": "running", "to": "stopped"}
    # A move the lifecycle forbids is a 409 page naming the state.
    refused = client.post(url, data={"csrf": token, "status": "paused", "confirm": "yes"}, headers=NO_BEARER)
    assert refused.status_code == 409 and "stopped" in refused.text
    assert client.post(url, data={"csrf": token, "status": "archived"}, headers=NO_BEARER).status_code == 422


def test_signing_out_needs_the_token_and_ends_the_session(client: TestClient) -> None:
    sign_in(client, new_key(client, "read"))
    assert client.post("/ui/sign-out", headers=NO_BEARER, data={}).status_code == 403
    token = csrf_of(page(client, "/ui/experiments").text)
    out = client.post("/ui/sign-out", data={"csrf": token}, headers=NO_BEARER, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/sign-in"
    assert page(client, "/ui/experiments").status_code == 303


def test_the_json_download_is_the_apis_answer_and_the_csv_its_table(client: TestClient) -> None:
    experiment = with_data(client)
    sign_in(client, new_key(client, "read"))
    for method in ("fixed", "sequential", "bayesian"):
        downloaded = page(client, f"/ui/experiments/{experiment['id']}/results.json", method=method)
        assert downloaded.headers["content-disposition"] == 'attachment; filename="pages-results.json"'
        assert downloaded.json() == results(client, experiment["id"], method=method)
    table = page(client, f"/ui/experiments/{experiment['id']}/results.csv", start_date="2026-11-28")
    assert table.headers["content-type"].startswith("text/csv")
    api = results(client, experiment["id"], start_date="2026-11-28")
    lines = table.text.strip().split("\r\n")
    assert len(lines) == 3
    for line, variant in zip(lines[1:], api["variants"], strict=True):
        cells = line.split(",")
        assert cells[0] == variant["variant_id"] and int(cells[3]) == variant["users"]
        assert float(cells[5]) == variant["primary_conversion_rate"]


def test_the_page_says_too_early_with_few_users(client: TestClient) -> None:
    experiment = with_data(client, users=30)
    sign_in(client, new_key(client, "read"))
    shown = page(client, f"/ui/experiments/{experiment['id']}")
    assert 'data-kind="early"' in shown.text and "Too early to call" in shown.text
    listing = page(client, "/ui/experiments")
    assert "health-early" in listing.text


def test_a_scorecard_page_shows_every_metric_the_decision_and_a_breached_guardrail(store_client: TestClient) -> None:
    metrics = [*METRICS[:-1], {**METRICS[-1], "tolerance": 0.01}]
    experiment, _ = scenario(store_client, {"metrics": metrics})
    api = results(store_client, experiment["id"])
    sign_in(store_client, new_key(store_client, "read"))
    shown = page(store_client, f"/ui/experiments/{experiment['id']}")
    assert shown.status_code == 200
    assert shown.text.count('<table class="metric"') == len(metrics)
    breached = [
        (c["variant_id"], m["metric"]["name"])
        for m in api["scorecard"]["metrics"]
        for c in m["comparisons"]
        if c.get("guardrail") == "breached"
    ]
    assert breached, "the scenario's treatments fail more often than the 1% tolerated"
    assert shown.text.count('data-kind="guardrail"') == len(breached)
    verdicts = re.findall(r'<li data-verdict="([a-z_]+)">', shown.text)
    assert verdicts == [d["decision"] for d in api["scorecard"]["decisions"]]
    assert "health-guardrail" in page(store_client, "/ui/experiments").text


def test_the_over_time_page_draws_a_line_per_variant_and_a_band_per_comparison(
    client: TestClient, fake_clock: FakeClock
) -> None:
    experiment = with_data(client, users=200)
    for _ in range(3):
        fake_clock.advance(days=1)
        batch = [event(experiment["id"], f"u{i}", "buy", value=5) for i in range(0, 200, 7)]
        assert client.post("/events", json={"events": batch}).status_code == 202
    sign_in(client, new_key(client, "read"))
    shown = page(client, f"/ui/experiments/{experiment['id']}/over-time", method="sequential")
    assert shown.status_code == 200, shown.text
    api = client.get(f"/experiments/{experiment['id']}/results/timeseries").json()
    rate_chart = shown.text.split('id="rate-chart"', 1)[1].split("</figure>", 1)[0]
    lift_chart = shown.text.split('id="lift-chart"', 1)[1].split("</figure>", 1)[0]
    assert rate_chart.count('<polyline class="series') == len(experiment["variants"])
    assert lift_chart.count('<polyline class="series') == len(experiment["variants"]) - 1
    assert lift_chart.count('<polygon class="band') == len(experiment["variants"]) - 1
    chance_chart = shown.text.split('id="chance-chart"', 1)[1].split("</figure>", 1)[0]
    assert chance_chart.count('<polyline class="series') == len(experiment["variants"]) - 1
    last_chance = api["points"][-1]["comparisons"][0]["chance_to_beat_control"]
    assert f"{last_chance * 100:.1f}%" in shown.text.split('id="over-time"', 1)[1]
    exposure_chart = shown.text.split('id="exposure-chart"', 1)[1].split("</figure>", 1)[0]
    line = re.search(r'<polyline class="series series-1" data-series="green" points="([^"]+)"', exposure_chart)
    assert line is not None and len(line.group(1).split()) == len(api["since_exposure"])
    assert "confidence sequence" in shown.text
    # Every point of the line is a point of the series; the table says the same in figures.
    points = re.search(r'<polyline class="series series-0" data-series="control" points="([^"]+)"', rate_chart)
    assert points is not None and len(points.group(1).split()) == len(api["points"])
    rows = shown.text.split('id="over-time"', 1)[1].count("<tr><th scope=\"row\">")
    assert rows == len(api["points"])
    last_rate = api["points"][-1]["variants"][0]["conversion_rate"]
    assert f"{last_rate * 100:.2f}%" in shown.text.split('id="over-time"', 1)[1]
    assert page(client, f"/ui/experiments/{experiment['id']}/over-time", method="bayesian").status_code == 422
    assert page(client, f"/ui/experiments/{experiment['id']}/over-time", period="week").status_code == 422


def sliced(client: TestClient, users: int = 300) -> dict:
    """An experiment split by platform: users assigned with one of three values, or none."""
    experiment = create_experiment(client, "sliced pages", [("control", 50), ("green", 50)], primary="buy",
                                   analysis={"dimensions": ["platform", "plan"]})
    batch = []
    for i in range(users):
        attributes = {"plan": "pro"} if i % 4 == 0 else {"plan": "free", "platform": ["ios", "android", "web"][i % 3]}
        answer = client.post(f"/experiments/{experiment['id']}/assignment/s{i}", json={"attributes": attributes})
        assert answer.status_code == 200, answer.text
        if i % 4 == 1 or (answer.json()["variant_name"] == "green" and i % 3 == 0):
            batch.append(event(experiment["id"], f"s{i}", "buy", value=3))
    assert client.post("/events", json={"events": batch}).status_code == 202
    return experiment


def figures(row: str) -> dict[str, float | None]:
    """A table row's exact figures: each cell's ``data-value``, and the interval's ends."""
    found: dict[str, float | None] = {
        name: None if value == "" else float(value)
        for name, value in re.findall(r'data-field="([a-z_]+)" data-value="([^"]*)"', row)
    }
    interval = re.search(r'data-field="interval" data-lower="([^"]*)" data-upper="([^"]*)"', row)
    assert interval is not None, row
    found["lower"], found["upper"] = (None if v == "" else float(v) for v in interval.groups())
    return found


def shown_interval(comparison: dict, method: str) -> dict:
    """The interval a page draws under ``method``, as the API answers it."""
    if method == "sequential":
        return comparison["sequential"]["confidence_interval"]
    if method == "bayesian":
        return comparison["bayesian"]["absolute_lift"]["credible_interval"]
    return comparison["confidence_interval"]


def test_the_breakdown_tab_shows_each_slice_as_the_api_answers_it(store_client: TestClient) -> None:
    experiment = sliced(store_client)
    x = experiment["id"]
    sign_in(store_client, new_key(store_client, "read"))
    main = page(store_client, f"/ui/experiments/{x}")
    tabs = re.findall(r'class="breakdown-link" data-dimension="([a-z]+)" href="([^"]+)"', main.text)
    assert tabs == [("platform", f"/ui/experiments/{x}/breakdown/platform"), ("plan", f"/ui/experiments/{x}/breakdown/plan")]
    for method in ("fixed", "sequential", "bayesian"):
        shown = page(store_client, f"/ui/experiments/{x}/breakdown/platform", method=method)
        assert shown.status_code == 200, shown.text
        assert shown.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'none'" in shown.headers["content-security-policy"] and "<script" not in shown.text
        assert f'<option value="{method}" selected>' in shown.text
        assert "<strong>By platform</strong>" in shown.text  # the tab of this page, not a link
        api = store_client.get(f"/experiments/{x}/results/breakdown", params={"dimension": "platform", "method": method}).json()
        # Values by users (ties by value), then the users assigned without a platform.
        assert [(s["kind"], s["value"]) for s in api["slices"]] == [
            ("value", "android"), ("value", "ios"), ("value", "web"), ("unknown", None)]
        headings = re.findall(r'<h2 class="slice" data-kind="([a-z]+)">([^<]+) <span', shown.text)
        assert headings == [("value", "android"), ("value", "ios"), ("value", "web"), ("unknown", "unknown (no value)")]
        slice_users = [int(u) for u in re.findall(r'data-field="slice-users" data-value="(\d+)"', shown.text)]
        assert slice_users == [s["users"] for s in api["slices"]]
        tables = shown.text.split('<table class="slice-table"')[1:]
        assert len(tables) == len(api["slices"])
        zeros = set()
        for table, s in zip(tables, api["slices"], strict=True):
            assert f'data-kind="{s["kind"]}"' in table.split(">", 1)[0]
            table = table.split("</table>", 1)[0]
            comparisons = {c["variant_id"]: c for c in s["comparisons"]}
            for v in s["variants"]:
                row = table.split(f'<tr data-variant-id="{v["variant_id"]}">', 1)[1].split("</tr>", 1)[0]
                cells = figures(row)
                assert (cells["users"], cells["conversions"], cells["rate"]) == (
                    v["users"], v["conversions"], v["conversion_rate"])
                comparison = comparisons.get(v["variant_id"])
                if comparison is None:  # the control: no lift, no p, no bar
                    assert v["is_control"] and '<svg class="interval"' not in row
                    assert cells["relative_lift"] is None and cells["p_value_adjusted_across_slices"] is None
                    continue
                assert cells["relative_lift"] == comparison["relative_lift"]
                assert cells["p_value"] == comparison["p_value"]
                assert cells["p_value_adjusted_across_slices"] == comparison["p_value_adjusted_across_slices"]
                interval = shown_interval(comparison, method)
                assert (cells["lower"], cells["upper"]) == (interval["lower"], interval["upper"])
                if method == "bayesian":
                    assert cells["chance_to_beat"] == comparison["bayesian"]["chance_to_beat_control"]
                # The bar: one per compared variant, its tone by the side of 0 it lies on.
                (tone,) = re.findall(r'<svg class="interval"[^>]* data-tone="([a-z]+)"', row)
                assert tone == ("good" if interval["lower"] > 0 else "bad" if interval["upper"] < 0 else "neutral")
                zeros.update(re.findall(r'<line class="zero" x1="([0-9.]+)"', row))
            assert table.count('<svg class="interval"') == len(s["comparisons"])
        assert len(zeros) == 1  # every slice's bars on one axis
        # The note on the p to read names the correction the API used.
        note = shown.text.split('id="across-note"', 1)[1].split("</p>", 1)[0]
        assert "p (across slices)" in note and ("Holm" if api["correction"] == "holm" else "Benjamini") in note
    table = page(store_client, f"/ui/experiments/{x}/breakdown/platform/breakdown.csv")
    assert table.headers["content-type"] == "text/csv; charset=utf-8"
    assert table.headers["content-disposition"] == 'attachment; filename="sliced-pages-by-platform.csv"'
    lines = table.text.strip().split("\r\n")
    assert lines[0].startswith("dimension,slice_kind,slice,variant_id") and len(lines) == 1 + 4 * 2
    assert [line.split(",")[2] for line in lines[1::2]] == ["android", "ios", "web", "unknown (no value)"]
    # The method control reads the download too: the CSV link keeps the page's query.
    sequential = page(store_client, f"/ui/experiments/{x}/breakdown/platform", method="sequential").text
    assert f'href="/ui/experiments/{x}/breakdown/platform/breakdown.csv?method=sequential"' in sequential


def test_a_breakdown_by_an_undeclared_dimension_is_a_page_naming_it(client: TestClient) -> None:
    experiment = sliced(client, users=20)
    sign_in(client, new_key(client, "read"))
    for path in (f"/ui/experiments/{experiment['id']}/breakdown/country",
                 f"/ui/experiments/{experiment['id']}/breakdown/country/breakdown.csv"):
        shown = page(client, path)
        assert shown.status_code == 422 and shown.headers["content-type"].startswith("text/html")
        assert "<code>dimension</code>" in shown.text and "platform, plan" in shown.text
    # An experiment that names no dimension has no tab, and no breakdown page either.
    plain = with_data(client, users=10)
    assert 'class="breakdown-link"' not in page(client, f"/ui/experiments/{plain['id']}").text
    assert page(client, f"/ui/experiments/{plain['id']}/breakdown/platform").status_code == 422
    assert page(client, "/ui/experiments/nope/breakdown/platform").status_code == 404
    client.cookies.clear()  # no session: to the form
    assert page(client, f"/ui/experiments/{experiment['id']}/breakdown/platform").status_code in (302, 303)


def test_a_session_whose_key_lacks_read_sees_no_breakdown(
    client: TestClient, database_url: str, fake_clock: FakeClock
) -> None:
    from entrypoints.config.container import build_sealer
    from entrypoints.config.settings import Settings
    from tests.e2e.conftest import TOKEN

    x = sliced(client, users=40)["id"]
    paths = (f"/ui/experiments/{x}/breakdown/platform", f"/ui/experiments/{x}/breakdown/platform/breakdown.csv")
    for scope in ("ingest", "assign"):
        key = new_key(client, scope)
        # The form refuses the key, so there is no session: every page sends to the form.
        form = page(client, "/ui/sign-in")
        refused = client.post("/ui/sign-in", data={"csrf": csrf_of(form.text), "api_key": key}, headers=NO_BEARER)
        assert refused.status_code == 403 and "lacks the read scope" in refused.text
        for path in paths:
            assert page(client, path).headers["location"] == "/ui/sign-in"
        # A session holding the key anyway (sealed with the service's own secret, as none but
        # it could): every request checks the key's scope again, and refuses it.
        sealed, _ = build_sealer(Settings(database_url=database_url, api_tokens=(TOKEN,))).session(key, fake_clock.now())
        client.cookies.set("experiments_session", sealed, path="/ui")
        for path in paths:
            shown = page(client, path)
            assert shown.status_code == 403 and shown.headers["content-type"].startswith("text/html"), path
            assert "lacks the &#39;read&#39; scope" in shown.text
            assert "slice-table" not in shown.text and "data-value" not in shown.text
        client.cookies.clear()


def test_a_dimension_named_in_any_letters_has_its_tab_and_its_download(client: TestClient) -> None:
    dimensions = ["app version", "région", "plan?"]
    experiment = create_experiment(client, "Kaufknopf grün", [("control", 50), ("green", 50)], primary="buy",
                                   analysis={"dimensions": dimensions})
    x = experiment["id"]
    for i in range(30):
        attributes = {"app version": f"1.{i % 2}", "région": "Île-de-France", "plan?": None}
        answer = client.post(f"/experiments/{x}/assignment/d{i}", json={"attributes": attributes})
        assert answer.status_code == 200, answer.text
    sign_in(client, new_key(client, "read"))
    main = page(client, f"/ui/experiments/{x}").text
    links = re.findall(r'class="breakdown-link" data-dimension="([^"]+)" href="([^"]+)"', main)
    assert [name for name, _ in links] == dimensions
    for name, href in links:
        shown = page(client, href)
        assert shown.status_code == 200, (name, href)
        assert f"<strong>By {name}</strong>" in shown.text
        api = client.get(f"/experiments/{x}/results/breakdown", params={"dimension": name}).json()
        slice_users = [int(u) for u in re.findall(r'data-field="slice-users" data-value="(\d+)"', shown.text)]
        assert slice_users == [s["users"] for s in api["slices"]]
        download = page(client, f"{href}/breakdown.csv")
        assert download.status_code == 200 and download.headers["content-type"] == "text/csv; charset=utf-8"
        assert download.text.count("\r\n") == 1 + 2 * len(api["slices"])
    # A file name is ASCII, with the name as written beside it for the browsers that read it.
    disposition = page(client, f"/ui/experiments/{x}/breakdown/r%C3%A9gion/breakdown.csv").headers["content-disposition"]
    assert disposition == (
        'attachment; filename="Kaufknopf-gr-n-by-r-gion.csv"; '
        "filename*=UTF-8''Kaufknopf-gr%C3%BCn-by-r%C3%A9gion.csv"
    )
    assert page(client, f"/ui/experiments/{x}/results.csv").headers["content-disposition"].startswith(
        'attachment; filename="Kaufknopf-gr-n-results.csv"; filename*=')
