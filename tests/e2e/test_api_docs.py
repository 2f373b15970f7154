"""The API reference pages under /schema: served from the package's own files, no other host."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from litestar.testing import TestClient

from entrypoints.http.docs_assets import ASSETS_DIRECTORY, ASSETS_PATH, DOCS_PAGE_PATHS

REPO_ROOT = Path(__file__).resolve().parents[2]
# Anything a page could load or link to: an absolute URL, or a scheme-relative one (//host/...).
URL = re.compile(r"""(?:https?:)?//[^\s"'<>()\\]+""", re.IGNORECASE)
LOCAL_REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def foreign_urls(html: str, own_origin: str) -> list[str]:
    own = (own_origin, own_origin.split(":", 1)[1])  # http://host and //host
    return [url for url in URL.findall(html) if not url.startswith(own)]


def test_the_url_check_catches_what_a_cdn_page_holds() -> None:
    page = (
        '<link href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">'
        "<script src='//unpkg.com/x.js'></script><a href='http://testserver.local/schema'>"
    )
    assert foreign_urls(page, "http://testserver.local") == [
        "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css",
        "//unpkg.com/x.js",
    ]


@pytest.mark.parametrize("path", DOCS_PAGE_PATHS)
def test_a_docs_page_names_no_url_outside_the_service(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    origin = str(client.base_url).rstrip("/")
    assert foreign_urls(response.text, origin) == []


@pytest.mark.parametrize("path", DOCS_PAGE_PATHS)
def test_everything_a_docs_page_loads_is_served_without_a_token_and_cached(
    client: TestClient, path: str
) -> None:
    html = client.get(path).text
    references = LOCAL_REFERENCE.findall(html)
    # The stylesheet, the two scripts and the icon.
    assert len(references) == 4, references
    client.headers.pop("Authorization")
    for reference in references:
        assert reference.startswith(f"{ASSETS_PATH}/"), reference
        response = client.get(reference)
        assert response.status_code == 200, reference
        assert response.content == (ASSETS_DIRECTORY / reference.rsplit("/", 1)[1]).read_bytes()
        cache_control = response.headers["cache-control"]
        assert "max-age=31536000" in cache_control and "public" in cache_control


def test_the_swagger_ui_styles_load_no_fonts_or_imports_from_elsewhere() -> None:
    css = (ASSETS_DIRECTORY / "swagger-ui.css").read_text()
    assert "@import" not in css and "@font-face" not in css
    # Every image is inline; the fonts are the system's (font-family lists, nothing to fetch).
    urls = re.findall(r"url\(\s*[\"']?([^\"')]*)", css)
    assert urls and all(url.startswith("data:") for url in urls)


@pytest.mark.parametrize(
    "path",
    [
        "/schema/redoc",
        "/schema/elements",
        "/schema/rapidoc",
        "/schema/oauth2-redirect.html",
        f"{ASSETS_PATH}/no-such-file.js",
        f"{ASSETS_PATH}/%2e%2e/%2e%2e/docs_assets.py",  # only the Swagger UI folder is served
    ],
)
def test_viewers_that_would_need_the_internet_and_other_files_are_not_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "path", ["/schema/openapi.json", "/schema/openapi.yaml", "/schema/openapi.yml"]
)
def test_the_document_itself_is_still_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert "/experiments/{experiment_id}/assignment/{user_id}" in response.text


def test_pip_install_carries_every_file_the_page_loads(client: TestClient) -> None:
    """The files are package data: each one a page loads matches a pattern in pyproject.toml."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["entrypoints.http"]
    package_dir = REPO_ROOT / "entrypoints" / "http"
    loaded = [ref.rsplit("/", 1)[1] for ref in LOCAL_REFERENCE.findall(client.get("/schema").text)]
    for name in [*loaded, "LICENSE", "NOTICE"]:
        relative = (ASSETS_DIRECTORY / name).relative_to(package_dir).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
