"""The API source's egress policy end to end: redirects and pagination links stay on the
configured origin unless ``allowed_origins`` names more; credentials (auth, api keys,
custom headers, cookies) go only to the configured origin unless ``auth.origins`` names
more; hosts resolve once to a checked address; bodies are capped.

Two real servers: the test API on 127.0.0.1 and the same API on 127.0.0.2 (another origin).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from module_system.errors import JobCancelled, JobTimeout
from module_system.sources.http import ratelimit
from module_system.sources.http.client import ApiClient
from module_system.sources.http.egress import EgressPolicy
from module_system.sources.http.ratelimit import TokenBucket
from module_system.sources.http.transport import make_client
from tests import api_server as harness
from tests import egress_helpers
from tests.api_server import API_KEY, BEARER, CLIENT, ApiServer, RunApiJobs
from tests.egress_helpers import StubDns

dns, connections = egress_helpers.dns, egress_helpers.connections

ITEMS = {"records_path": "items"}
CUSTOM = {"X-Tenant-Secret": "tenant-5a7c"}
AUTHS = {
    "bearer": ({"type": "bearer", "token": BEARER}, "authorization", BEARER),
    "key-header": ({"type": "api_key", "api_key": API_KEY}, "x-api-key", API_KEY),
    "key-query": (
        {"type": "api_key", "api_key": API_KEY, "in": "query", "name": "api_key"},
        "api_key", API_KEY,
    ),
}  # fmt: skip


def sent(server: ApiServer, path: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(query, headers) of every request ``server`` got for ``path``."""
    return [(query, headers) for p, query, headers in server.state.requests if p == path]


def carries(query: dict[str, str], headers: dict[str, str], value: str) -> bool:
    return any(value in v for v in [*query.values(), *headers.values()])


def test_redirect_to_another_origin_fails_the_job_naming_origin_and_key(
    run: Any, api: ApiServer, other_api: ApiServer
) -> None:
    other_api.reset()
    job = run({"url": f"/redirect?to={other_api.url}/pages", "records_path": "data.items"})
    assert job.result.status == "failed"
    assert other_api.url in job.result.error and "allowed_origins" in job.result.error
    assert other_api.state.requests == []  # refused before anything was sent


@pytest.mark.parametrize("style", ["next_url", "link_header"])
def test_pagination_links_to_another_origin_are_refused(
    run: Any, api: ApiServer, other_api: ApiServer, style: str
) -> None:
    other_api.reset()
    pagination = {"type": style} if style == "link_header" else {"type": style, "path": "next"}
    job = run({"url": f"/handoff?to={other_api.url}/handoff", "pagination": pagination, **ITEMS})
    assert job.result.status == "failed"
    assert f"{other_api.url} is not an origin" in job.result.error
    assert "allowed_origins" in job.result.error
    assert other_api.state.requests == []


@pytest.mark.parametrize("method", sorted(AUTHS))
def test_allowed_origins_receive_no_credentials(
    run: Any, api: ApiServer, other_api: ApiServer, method: str
) -> None:
    other_api.reset()
    auth, field, secret = AUTHS[method]
    source = {
        "url": f"/handoff?to={other_api.url}/handoff", "pagination": {"type": "next_url"},
        "auth": auth, "headers": CUSTOM, "allowed_origins": [other_api.url], **ITEMS,
    }  # fmt: skip
    job = run(source)
    assert job.result.status == "completed", job.result.error
    [(query, headers)] = sent(api, "/handoff")
    assert carries(query, headers, secret) and headers["x-tenant-secret"] == "tenant-5a7c"
    [(query, headers)] = sent(other_api, "/handoff")
    assert field not in query and field not in headers
    assert not carries(query, headers, secret) and "x-tenant-secret" not in headers


def test_allowed_redirect_is_followed_without_credentials(
    run: Any, api: ApiServer, other_api: ApiServer
) -> None:
    other_api.reset()
    auth, _, secret = AUTHS["key-header"]
    source = {"url": f"/redirect?to={other_api.url}/pages", "records_path": "data.items",
              "auth": auth, "headers": CUSTOM, "allowed_origins": [other_api.url]}  # fmt: skip
    job = run(source)
    assert job.result.status == "completed", job.result.error
    [(query, headers)] = sent(other_api, "/pages")
    assert not carries(query, headers, secret) and "x-tenant-secret" not in headers


def test_auth_origins_extend_where_credentials_go(
    run: Any, api: ApiServer, other_api: ApiServer
) -> None:
    other_api.reset()
    auth = {**AUTHS["key-header"][0], "origins": [other_api.url]}
    source = {"url": f"/handoff?to={other_api.url}/handoff", "pagination": {"type": "next_url"},
              "auth": auth, "headers": CUSTOM, **ITEMS}  # fmt: skip
    job = run(source)  # auth.origins also permits the origin: no allowed_origins needed
    assert job.result.status == "completed", job.result.error
    [(_, headers)] = sent(other_api, "/handoff")
    assert headers["x-api-key"] == API_KEY and headers["x-tenant-secret"] == "tenant-5a7c"


def test_cookies_stay_on_the_configured_origin(
    api: ApiServer, other_api: ApiServer, dns: StubDns, connections: list[Any],
    run_api_jobs: RunApiJobs, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A cookie for ``Domain=api.test`` would go to ``data.api.test`` by cookie rules."""
    api.reset(), other_api.reset()
    monkeypatch.setattr(ratelimit, "_buckets", {})
    dns.table |= {"api.test": ["127.0.0.1"], "data.api.test": ["127.0.0.2"]}
    first, second = f"http://api.test:{api.port}", f"http://data.api.test:{other_api.port}"
    bearer = {"type": "bearer", "token": BEARER}
    for auth in (bearer, {**bearer, "origins": [second]}):
        source = {"url": f"{first}/handoff?cookie=c00kie-4d2f&to={second}/handoff",
                  "pagination": {"type": "next_url"}, "auth": auth,
                  "allowed_origins": [second], **ITEMS}  # fmt: skip
        [job] = run_api_jobs({"cookies": harness.service(source)})
        assert job.result.status == "completed", job.result.error
    without, with_origins = (headers for _, headers in sent(other_api, "/handoff"))
    assert "cookie" not in without and "authorization" not in without
    assert with_origins["cookie"] == "session=c00kie-4d2f"  # the jar would send it
    assert with_origins["authorization"] == f"Bearer {BEARER}"
    assert {address for address, _ in connections} == {"127.0.0.1", "127.0.0.2"}
    assert {"api.test", "data.api.test"} <= set(dns.calls)


def test_metadata_address_of_a_configured_name_is_refused(
    run: Any, dns: StubDns, connections: list[Any], run_api_jobs: RunApiJobs, api: ApiServer
) -> None:
    dns.table["metadata.test"] = ["169.254.169.254"]
    source = {"url": f"http://metadata.test:{api.port}/pages", "records_path": "data.items"}
    [job] = run_api_jobs({"meta": harness.service(source)})
    assert job.result.status == "failed"
    assert "cloud metadata address" in job.result.error
    assert not any(address == "169.254.169.254" for address, _ in connections)


def test_a_deny_entry_refuses_even_a_configured_origin(
    run: Any, other_api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_api.reset()
    egress_helpers.deny(monkeypatch, "127.0.0.2/32")
    job = run({"url": f"/redirect?to={other_api.url}/pages", "records_path": "data.items",
               "allowed_origins": [other_api.url]})  # fmt: skip
    assert job.result.status == "failed" and "a test deny entry" in job.result.error
    assert other_api.state.requests == []


def test_oauth2_token_url_on_another_origin_gets_only_the_client_credentials(
    run: Any, api: ApiServer, other_api: ApiServer
) -> None:
    other_api.reset()
    auth = {"type": "oauth2_client_credentials", "token_url": other_api.url + "/oauth/token",
            "client_id": CLIENT[0], "client_secret": CLIENT[1]}  # fmt: skip
    other_api.state.tokens = api.state.tokens  # one authorisation server for both
    job = run({"url": "/secure/oauth", "auth": auth, "records_path": "data.items"})
    assert job.result.status == "completed", job.result.error
    assert [p for p, _, _ in other_api.state.requests] == ["/oauth/token"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_response_over_max_response_bytes_fails_its_page(
    run: Any, api: ApiServer, chunked: bool
) -> None:
    url = "/big?bytes=5000" + ("&chunked=1" if chunked else "")
    job = run({"url": url, "max_response_bytes": 2048, **ITEMS})
    assert job.result.status == "failed"
    [page] = job.manifest["files"]
    assert page["outcome"] == "failed" and "max_response_bytes (2048 bytes)" in page["error"]


@pytest.mark.parametrize(("status", "method"), [(307, "POST"), (303, "GET")])
def test_redirects_keep_or_drop_the_body_as_browsers_do(
    run: Any, api: ApiServer, status: int, method: str
) -> None:
    source = {"url": f"/redirect?status={status}&to=/echo", "method": "POST",
              "json": {"station": "ST001"}, **ITEMS}  # fmt: skip
    job = run(source)
    if method == "POST":
        assert job.result.status == "completed", job.result.error
        assert job.pages[0]["details"]["records"] == 1
    else:  # /echo takes POST only: the GET that a 303 turns into is refused with 405
        assert "HTTP 405" in job.result.error
    assert [p for p, _, _ in api.state.requests] == ["/redirect", "/echo"]


def test_the_rate_limit_wait_ends_on_cancel_without_sending(api: ApiServer) -> None:
    api.reset()
    url = api.url + "/pages"
    policy = EgressPolicy.build([url], [url])
    bucket, cancel = TokenBucket(rate=0.001, burst=1), threading.Event()
    client = ApiClient(make_client(policy, timeout=5), bucket, policy, cancel=cancel)
    client.send(client.build_request("GET", url))  # the burst token
    threading.Timer(0.05, cancel.set).start()  # while the next request waits ~1000 s
    with pytest.raises(JobCancelled):
        client.send(client.build_request("GET", url))
    with pytest.raises(JobCancelled):  # cancelled already: not even a token is taken
        client.send(client.build_request("GET", url))
    assert len(api.paths("/pages")) == 1
    client.close()


def test_the_rate_limit_does_not_wait_past_the_deadline() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=0.001, burst=1, clock=lambda: now[0])
    assert bucket.acquire(deadline=200.0) == 0
    with pytest.raises(JobTimeout):
        bucket.acquire(deadline=200.0)  # the next token is 1000 s away
