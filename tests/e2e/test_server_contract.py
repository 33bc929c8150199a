"""The published contract holds on a live server: schemathesis fuzzes every operation from
/openapi.json (open, with keys, and the admin API) and finds no failure; /docs renders
from bundled assets in a real headless browser and a "try it" call succeeds."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, serving

pytestmark = pytest.mark.slow

USER_KEY = "sk-contract-user-000001"
ADMIN_KEY = "sk-contract-admin-00001"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXAMPLES = 25  # per operation and phase; with a fixed seed the run is the same every time


@pytest.fixture(scope="module")
def keyed(minilm_gguf: Path, server_logs: Path) -> Iterator[ServerProcess]:
    args = ["--model-path", str(minilm_gguf), "--model-name", "m", "--cache-size", "16MB"]
    args += ["--api-key", USER_KEY, "--admin-key", ADMIN_KEY]
    with serving(args, server_logs) as process:
        yield process


def _fuzz(server: ServerProcess, tmp_path: Path, key: str | None, paths: str) -> None:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        server.url + "/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261125",
        "--request-timeout",
        "30",
        "--include-path-regex",
        paths,
    ]
    if key is not None:
        command += ["--header", f"Authorization: Bearer {key}"]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert summary is not None and summary.group(1) == summary.group(2), done.stdout[-3000:]
    assert int(summary.group(1)) > 50  # it really generated cases


def test_fuzz_open_server(server: ServerProcess, tmp_path: Path) -> None:
    _fuzz(server, tmp_path, None, ".*")  # admin answers 403 here: off without an admin key


def test_fuzz_with_an_api_key(keyed: ServerProcess, tmp_path: Path) -> None:
    _fuzz(keyed, tmp_path, USER_KEY, "^/(?!admin)")


def test_fuzz_without_the_key(keyed: ServerProcess, tmp_path: Path) -> None:
    _fuzz(keyed, tmp_path, None, ".*")  # everything protected is a documented 401


def test_fuzz_the_admin_api(keyed: ServerProcess, tmp_path: Path) -> None:
    # Last on this server: fuzzing /admin/drain leaves it refusing new work (a 503).
    _fuzz(keyed, tmp_path, ADMIN_KEY, "^/admin")


def test_docs_use_only_bundled_assets(server: ServerProcess) -> None:
    page = httpx.get(server.url + "/docs").text
    assert "http" not in page.lower().replace("http-equiv", "")  # no CDN, nothing remote
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        response = httpx.get(f"{server.url}/docs/static/{asset}")
        assert response.status_code == 200 and len(response.content) > 10_000
    assert httpx.get(server.url + "/docs/static/..%2Fopenapi.py").status_code == 404


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is required for the /docs browser check (apt-get install chromium)")


def test_docs_render_and_try_it_works_in_a_browser(
    server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    """Headless Chromium: /docs renders OAS 3.1, lists the routes, and "Try it out" on
    POST /v1/embeddings gets a 200 with vectors. The screenshot stays in .pytest-artifacts."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1800})
            page.goto(server.url + "/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            listed = page.locator(".opblock-summary-path").all_inner_texts()
            assert {"/v1/embeddings", "/tokenize", "/v1/models", "/admin/config"} <= set(listed)
            operation = page.locator("#operations-default-post_v1_embeddings")
            operation.locator(".opblock-summary").click()
            operation.locator("button.try-out__btn").click()
            operation.locator("textarea.body-param__text").fill('{"input": "from the docs page"}')
            operation.locator("button.execute").click()
            row = operation.locator(".live-responses-table tbody tr").first
            row.wait_for(timeout=30_000)
            assert row.locator(".response-col_status").inner_text().strip() == "200"
            assert '"embedding"' in row.locator(".response-col_description").inner_text()
            artifacts = request.config.rootpath / ".pytest-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "docs.png"))
        finally:
            browser.close()
