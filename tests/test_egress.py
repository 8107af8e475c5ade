"""The egress policy and the pinned transport on their own: which addresses are refused,
that a name is resolved once and connected to at the checked address, and origin rules.

DNS is stubbed (``dns``) and every TCP connection is recorded by ``connections``, which also
fails any attempt beyond 127.0.0.0/8: refusals are proven without sending a packet there.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from module_system.sources.http.egress import (
    EgressPolicy,
    EgressRefused,
    address_refusal,
    origin_of,
    parse_origin,
)
from module_system.sources.http.transport import make_client
from tests import egress_helpers
from tests.egress_helpers import OriginServer, StubDns

dns, connections = egress_helpers.dns, egress_helpers.connections


@pytest.fixture
def server() -> Iterator[OriginServer]:
    with OriginServer("127.0.0.1") as running:
        running.routes["/ok"] = (200, {"Content-Type": "text/plain"}, b"ok")
        yield running


@pytest.mark.parametrize(
    ("address", "named", "why"),
    [
        ("169.254.169.254", True, "cloud metadata"),
        ("fd00:ec2::254", True, "cloud metadata"),
        ("::ffff:169.254.169.254", True, "cloud metadata"),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", True, "cloud metadata"),  # NAT64 of 169.254.169.254
        ("100.100.100.200", True, "cloud metadata"),
        ("169.254.1.1", True, "link-local"),
        ("fe80::1", True, "link-local"),
        ("0.0.0.0", True, "unspecified"),
        ("::", True, "unspecified"),
        ("224.0.0.1", True, "multicast"),
        ("ff02::1", True, "multicast"),
        ("240.0.0.1", True, "reserved"),
        ("127.0.0.1", False, "private or loopback"),
        ("::1", False, "private or loopback"),
        ("10.1.2.3", False, "private or loopback"),
        ("192.168.1.1", False, "private or loopback"),
        ("100.64.0.1", False, "private or loopback"),  # carrier-grade NAT
        ("fc00::1", False, "private or loopback"),
    ],
)
def test_refused_addresses(address: str, named: bool, why: str) -> None:
    refusal = address_refusal(address, named)
    assert refusal is not None and why in refusal


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.1", "fc00::1"])
def test_private_and_loopback_addresses_are_allowed_for_named_hosts(address: str) -> None:
    assert address_refusal(address, named=True) is None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(address, named=False) is None


def test_origins_are_normalised_and_config_entries_checked() -> None:
    assert origin_of("HTTP://Example.COM:80/a?b") == "http://example.com"
    assert origin_of("https://[::1]:8443/") == "https://[::1]:8443"
    assert origin_of("http://b\u00fccher.de/") == "http://xn--bcher-kva.de"
    assert parse_origin("https://cdn.example.com/") == "https://cdn.example.com"
    for bad in ("ftp://h", "https://h/path", "https://h?x=1", "https://u:p@h", "h"):
        with pytest.raises(ValueError):
            parse_origin(bad)


def test_policy_permits_named_origins_and_scope_only() -> None:
    policy = EgressPolicy.build(
        ["https://api.example.com/v1"], ["https://api.example.com"],
        in_scope=lambda url: httpx.URL(url).host.endswith("example.org"),
    )  # fmt: skip
    assert policy.permits("https://api.example.com/v2/other")
    assert not policy.permits("http://api.example.com/v1")  # another scheme: another origin
    assert not policy.permits("https://api.example.com:8443/v1")
    assert policy.permits("https://www.example.org/")
    with pytest.raises(EgressRefused) as refused:
        policy.check_origin("https://evil.example.net/x?token=abc", "redirect to")
    message = str(refused.value)
    assert "https://evil.example.net" in message and "allowed_origins" in message
    assert "abc" not in message  # credential-like parameters are masked


def test_metadata_name_is_refused_without_a_connection(
    dns: StubDns, connections: list[tuple[str, int]], server: OriginServer
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    dns.table["evil.test"] = ["169.254.169.254"]
    url = f"http://evil.test:{port}/ok"
    policy = EgressPolicy.build([url], [url])  # even a named host
    with make_client(policy, timeout=5) as client, pytest.raises(EgressRefused) as refused:
        client.get(url)
    assert refused.value.reason == "address_refused"
    assert "cloud metadata" in str(refused.value)
    assert connections == [] and server.requests == []


def test_a_name_resolving_to_one_bad_address_is_refused(
    dns: StubDns, connections: list[tuple[str, int]], server: OriginServer
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    dns.table["mixed.test"] = ["127.0.0.1", "169.254.169.254"]
    url = f"http://mixed.test:{port}/ok"
    policy = EgressPolicy.build([url], [url])
    with make_client(policy, timeout=5) as client, pytest.raises(EgressRefused):
        client.get(url)
    assert connections == []


def test_a_name_is_resolved_once_and_connected_to_at_the_checked_address(
    dns: StubDns, connections: list[tuple[str, int]], server: OriginServer
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    answers = iter([["127.0.0.1"]])  # a rebinding DNS: any second answer is the metadata one
    dns.table = _Rebinding(answers)  # type: ignore[assignment]
    url = f"http://api.test:{port}/ok"
    policy = EgressPolicy.build([url], [url])
    with make_client(policy, timeout=5) as client:
        assert client.get(url).text == "ok"
        assert client.get(url).text == "ok"  # the kept-alive connection
    assert dns.calls == ["api.test"]
    assert connections == [("127.0.0.1", port)]  # the checked address, not the name
    assert {r.headers["host"] for r in server.requests} == {f"api.test:{port}"}


def test_loopback_is_refused_for_a_host_the_config_does_not_name(
    dns: StubDns, connections: list[tuple[str, int]], server: OriginServer
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    dns.table["sub.example.test"] = ["127.0.0.1"]
    policy = EgressPolicy.build(
        ["http://example.test/"], [], in_scope=lambda url: "example.test" in url
    )
    with make_client(policy, timeout=5) as client, pytest.raises(EgressRefused) as refused:
        client.get(f"http://sub.example.test:{port}/ok")
    assert "private or loopback" in str(refused.value)
    assert connections == []


class _Rebinding(dict[str, list[str]]):
    """A DNS table whose first answer is loopback and every later one the metadata address."""

    def __init__(self, answers: Iterator[list[str]]) -> None:
        super().__init__()
        self.answers = answers

    def __contains__(self, host: object) -> bool:
        return True

    def __getitem__(self, host: str) -> list[str]:
        return next(self.answers, ["169.254.169.254"])
