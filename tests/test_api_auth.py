"""Every auth method against the test API, OAuth2 token caching and refresh, and secrets
kept out of logs, manifests and reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from module_system.orchestrator.report import write_report
from module_system.results import BatchResult
from module_system.sources.http.auth import OAuth2ClientCredentials, OAuth2ClientCredentialsConfig
from tests import api_server as harness
from tests.api_server import API_KEY, BASIC, BEARER, CLIENT, ApiServer, RunApiJobs

PAGED = {"pagination": {"type": "page_number", "total_path": "total_pages"}}
RECORDS = {"records_path": "data.items"}


def oauth(api: ApiServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "oauth2_client_credentials",
        "token_url": api.url + "/oauth/token",
        "client_id": CLIENT[0],
        "client_secret": CLIENT[1],
        **extra,
    }


@pytest.mark.parametrize(
    ("method", "auth"),
    [
        ("bearer", {"type": "bearer", "token": BEARER}),
        ("key-header", {"type": "api_key", "api_key": API_KEY}),
        ("key-query", {"type": "api_key", "api_key": API_KEY, "in": "query", "name": "api_key"}),
        ("basic", {"type": "basic", "username": BASIC[0], "password": BASIC[1]}),
    ],
)
def test_static_auth_methods(run: Any, api: ApiServer, method: str, auth: dict[str, Any]) -> None:
    job = run({"url": f"/secure/{method}", "auth": auth, **PAGED, **RECORDS})
    assert job.result.status == "completed", job.result.error
    assert job.result.counts.valid == 3


def test_wrong_credentials_fail_at_once(run: Any, api: ApiServer) -> None:
    wrong = {"type": "bearer", "token": "wrong-token-0000"}
    job = run({"url": "/secure/bearer", "auth": wrong, **RECORDS})
    assert job.result.status == "failed"
    assert "HTTP 401" in job.result.error and "/secure/bearer" in job.result.error
    assert len(api.paths("/secure/bearer")) == 1  # a 401 is not retried


def test_oauth2_token_is_fetched_once_and_reused(run: Any, api: ApiServer) -> None:
    job = run({"url": "/secure/oauth", "auth": oauth(api), **PAGED, **RECORDS})
    assert job.result.status == "completed", job.result.error
    assert len(api.paths("/oauth/token")) == 1
    assert len(api.paths("/secure/oauth")) == 3


def test_oauth2_token_refused_by_the_api_is_renewed_once(run: Any, api: ApiServer) -> None:
    api.state.token_uses = 2  # the API stops accepting a token after two pages
    job = run({"url": "/secure/oauth", "auth": oauth(api, client_auth="basic"), **PAGED, **RECORDS})
    assert job.result.status == "completed", job.result.error
    assert len(api.paths("/oauth/token")) == 2
    assert job.result.counts.valid == 3


def test_oauth2_token_refreshed_before_expiry(api: ApiServer) -> None:
    api.reset()
    now = [1000.0]
    config = OAuth2ClientCredentialsConfig.model_validate(oauth(api, refresh_leeway=60))
    auth = OAuth2ClientCredentials(config, clock=lambda: now[0])
    with httpx.Client(auth=auth) as client:
        assert client.get(api.url + "/secure/oauth").status_code == 200
        now[0] += 3600 - 61  # still valid with a minute to spare: reused
        assert client.get(api.url + "/secure/oauth").status_code == 200
        assert auth.tokens_fetched == 1
        now[0] += 2  # inside the leeway: renewed before the API would refuse it
        assert client.get(api.url + "/secure/oauth").status_code == 200
    assert auth.tokens_fetched == 2
    tokens = [h["authorization"] for p, _, h in api.state.requests if p == "/secure/oauth"]
    assert tokens[0] == tokens[1] != tokens[2]


def test_oauth2_bad_client_secret_is_terminal(run: Any, api: ApiServer) -> None:
    auth = oauth(api, client_secret="wrong-secret-value")
    job = run({"url": "/secure/oauth", "auth": auth, **RECORDS})
    assert job.result.status == "failed"
    assert "OAuth2 token request" in job.result.error and "HTTP 401" in job.result.error
    assert len(api.paths("/oauth/token")) == 1


def test_secrets_never_reach_logs_manifests_or_reports(
    api: ApiServer, tmp_path: Path, run_api_jobs: RunApiJobs
) -> None:
    api.reset()
    key_query = {"type": "api_key", "api_key": API_KEY, "in": "query", "name": "api_key"}
    services = {
        "by_key": harness.service({"url": api.url + "/secure/key-query", "auth": key_query,
                                   **PAGED, **RECORDS}),
        "by_oauth": harness.service({"url": api.url + "/secure/oauth", "auth": oauth(api),
                                     **PAGED, **RECORDS}),
        "refused": harness.service({"url": api.url + "/secure/bearer",
                                    "auth": {"type": "bearer", "token": BEARER + "-old"}}),
    }  # fmt: skip
    logs = tmp_path / "logs"
    runs = run_api_jobs(services, log_dir=logs)
    assert [r.result.status for r in runs] == ["completed", "completed", "failed"]
    issued = list(api.state.tokens)
    texts = [json.dumps(r.manifest) for r in runs] + [p.read_text() for p in logs.iterdir()]
    texts.append(json.dumps([r.result.as_dict() for r in runs]))
    report = tmp_path / "report.json"  # the report the CLI writes
    batch = BatchResult("run", "test", [r.result for r in runs], *_times(runs))
    write_report(batch, report)
    texts.append(report.read_text())
    for secret in (API_KEY, CLIENT[1], BEARER, *issued):
        assert not any(secret in text for text in texts), secret
    urls = [f["source_uri"] for f in runs[0].manifest["files"]]
    assert urls and not any("api_key" in url for url in urls)  # auth adds it after logging


def _times(runs: list[harness.JobRun]) -> tuple[Any, Any]:
    return runs[0].result.started_at, runs[0].result.finished_at
