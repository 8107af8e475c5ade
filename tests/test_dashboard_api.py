"""The JSON API against its own OpenAPI description (schemathesis, over loopback), its
values against known rows, and the access rules: token, loopback Host, CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from module_system.dashboard import DashboardSettings, create_app
from module_system.errors import ConfigError
from module_system.state import StateStore
from tests.dashboard_data import sample_runs
from tests.dashboard_helpers import dashboard

TOKEN = "tok-3f9a1c7e5b2d4680"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    sample_runs(store)
    yield store
    store.close()


@pytest.fixture
def site(store: StateStore) -> Iterator[str]:
    with dashboard(store) as url:
        yield url


@pytest.fixture
def guarded(store: StateStore) -> Iterator[str]:
    with dashboard(store, token=TOKEN) as url:
        yield url


@pytest.fixture
def api_schema(site: str) -> Any:
    return schemathesis.openapi.from_url(site + "/api/openapi.json")


def test_api_conforms_to_its_openapi_schema(api_schema: Any) -> None:
    """A few generated requests per operation; every response must match the schema.
    (schemathesis' pytest fixture loader does not run on this pytest, so the loop is ours.)"""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 5
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def call(case: Any) -> None:
            case.call_and_validate()

        call()


def test_api_values_of_a_known_run_match_the_schema(site: str, api_schema: Any) -> None:
    checks = {
        "/api/runs?status=failed": ("/api/runs", "GET"),
        "/api/runs/run-b": ("/api/runs/{run_id}", "GET"),
        "/api/jobs/run-b/ftp_002": ("/api/jobs/{run_id}/{job_id}", "GET"),
        "/api/jobs/run-a/fin_001/files?outcome=quarantined": (
            "/api/jobs/{run_id}/{job_id}/files", "GET"),
        "/api/services": ("/api/services", "GET"),
    }  # fmt: skip
    bodies = {}
    for url, (path, method) in checks.items():
        response = httpx.get(site + url)
        assert response.status_code == 200, url
        api_schema[path][method].validate_response(response)
        bodies[url] = response.json()
    (run,) = bodies["/api/runs?status=failed"]["runs"]
    assert run["run_id"] == "run-b" and run["jobs_by_status"] == {
        "completed": 1, "failed": 1, "cancelled": 1}  # fmt: skip
    job = bodies["/api/jobs/run-b/ftp_002"]
    assert job["retries"] == {"ftp_421": 4, "connection_lost": 1}
    assert job["files"]["failed"] == 1 and job["duration_seconds"] == 12.0
    files = bodies["/api/jobs/run-a/fin_001/files?outcome=quarantined"]
    assert files["total"] == 1 and files["by_outcome"]["landed"] == 5
    assert files["files"][0]["messages"][1] == {
        "message": "type is 'string', expected 'number'", "row": 7, "column": "price"}  # fmt: skip


@pytest.mark.parametrize(
    "query", ["page=0", "page=x", "per_page=1001", "per_page=-1", "outcome=lost"]
)
def test_api_rejects_bad_parameters_with_400(site: str, query: str) -> None:
    response = httpx.get(f"{site}/api/jobs/run-a/fin_001/files?{query}")
    assert response.status_code == 400 and "error" in response.json()


def test_api_unknown_run_and_job_are_404(site: str) -> None:
    for path in ("/api/runs/nope", "/api/jobs/run-a/nope", "/api/jobs/nope/x/files"):
        assert httpx.get(site + path).status_code == 404


# access --------------------------------------------------------------------------------
def test_loopback_without_token_serves_every_page(site: str) -> None:
    for path in ("/", "/services", "/api/runs", "/metrics", "/runs/run-a"):
        assert httpx.get(site + path).status_code == 200, path


def test_loopback_without_token_refuses_a_foreign_host_header(site: str) -> None:
    """A page on evil.example resolved to 127.0.0.1 (DNS rebinding) gets nothing."""
    response = httpx.get(site + "/api/runs", headers={"Host": "evil.example"})
    assert response.status_code == 421
    assert httpx.get(site + "/api/runs", headers={"Host": "localhost:1"}).status_code == 200


@pytest.mark.parametrize("path", ["/api/runs", "/api/runs/run-a", "/metrics", "/api/services"])
def test_token_required_without_one_and_with_a_wrong_one(guarded: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-00000000"}, {"Authorization": TOKEN}):
        response = httpx.get(guarded + path, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
    ok = httpx.get(guarded + path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_token_protected_pages_send_browsers_to_sign_in(guarded: str) -> None:
    browser = httpx.Client(base_url=guarded, headers={"Accept": "text/html"})
    page = browser.get("/runs/run-b")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/runs/run-b"
    assert browser.get("/static/dashboard.css").status_code == 200  # public
    wrong = browser.post("/login?next=/runs/run-b", data={"token": "not-the-token-000"})
    assert wrong.status_code == 401 and "That is not the token" in wrong.text
    signed_in = browser.post("/login?next=/runs/run-b", data={"token": TOKEN})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/runs/run-b"
    assert TOKEN not in str(browser.cookies.jar)  # the cookie is derived, not the token
    assert browser.get("/runs/run-b").status_code == 200
    assert browser.get("/api/runs").status_code == 200
    browser.post("/logout")
    assert browser.get("/runs/run-b").status_code == 303


def test_sign_in_redirects_only_to_local_paths(guarded: str) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = httpx.post(guarded + "/login", params={"next": target},
                              data={"token": TOKEN})  # fmt: skip
        assert response.headers["location"] == "/"


def test_binding_beyond_loopback_needs_a_long_enough_token(store: StateStore) -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        create_app(DashboardSettings(host="0.0.0.0"), store)
    with pytest.raises(ConfigError, match="at least 16"):
        create_app(DashboardSettings(host="0.0.0.0", token="short"), store)
    create_app(DashboardSettings(host="0.0.0.0", token=TOKEN), store)  # not served: no packet


def test_rerun_post_needs_the_csrf_token_of_its_cookie(site: str) -> None:
    browser = httpx.Client(base_url=site)
    page = browser.get("/runs/run-b")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert browser.cookies["ms_dashboard_csrf"] == csrf
    for data, headers in (
        ({}, {}),
        ({"csrf": "forged"}, {}),
        ({"csrf": csrf}, {"Origin": "https://evil.example"}),
    ):
        response = browser.post("/runs/run-b/rerun", data=data, headers=headers)
        assert response.status_code == 403, (data, headers)
        assert "The form expired" in response.text
    bare = httpx.post(site + "/runs/run-b/rerun", data={"csrf": csrf})  # no cookie
    assert bare.status_code == 403


def test_pages_carry_security_headers(site: str) -> None:
    headers = httpx.get(site + "/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"


def test_dashboard_command_refuses_to_bind_beyond_loopback_without_a_token(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from module_system.cli import main

    state = f"sqlite:///{tmp_path / 'state.db'}"
    result = CliRunner().invoke(main, ["dashboard", "--host", "0.0.0.0", "--state-url", state,
                                       "--log-dir", str(tmp_path / "logs")])  # fmt: skip
    assert result.exit_code == 2
    assert "binding beyond loopback needs a token" in result.output
