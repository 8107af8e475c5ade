"""Where requests may go: the egress policy of one service.

Two rules, checked for every request the API source, the crawler, robots.txt, sitemaps, the
OAuth2 token request and (under ``render_js``) Chromium make:

- **Origins.** A request goes only to an origin the service's config names: the configured
  URL (API) or start URLs (web), the OAuth2 ``token_url``, ``allowed_origins``, and for
  the crawl every host inside ``allowed_domains``. Anything else (a redirect, a pagination
  link, a sitemap on another host) is refused with :class:`EgressRefused`.
- **Addresses.** Each host is resolved once and the connection goes to the address that was
  checked (see :mod:`.transport`), so a second DNS answer cannot swap it. Link-local, cloud
  metadata, unspecified, multicast and reserved addresses are always refused; private and
  loopback addresses only for hosts the config names itself (operators ingest internal APIs).

Credentials (auth, api keys, custom headers, cookies) are scoped separately: they go only to
``credential_origins`` (see :meth:`EgressPolicy.gets_credentials`).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated

import httpx
from pydantic import AfterValidator

from module_system.errors import TerminalError
from module_system.observability.redaction import mask_url

OPT_IN_KEY = "allowed_origins"
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# Refused for every host, named or not: the cloud metadata services (AWS, GCP and Azure at
# 169.254.169.254, AWS over IPv6, AWS ECS, Alibaba, Oracle) and link-local ranges.
# A module-level list so tests can add a loopback entry instead of touching these.
DENIED_NETWORKS: list[tuple[IPNetwork, str]] = [
    (ipaddress.ip_network("169.254.169.254/32"), "a cloud metadata address"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "a cloud metadata address"),
    (ipaddress.ip_network("169.254.170.2/32"), "a cloud metadata address"),
    (ipaddress.ip_network("100.100.100.200/32"), "a cloud metadata address"),
    (ipaddress.ip_network("192.0.0.192/32"), "a cloud metadata address"),
    (ipaddress.ip_network("169.254.0.0/16"), "a link-local address"),
    (ipaddress.ip_network("fe80::/10"), "a link-local address"),
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(TerminalError):
    """A request the service's egress policy does not allow; it was never sent."""

    default_reason = "egress_refused"

    def __init__(self, message: str, url: str = "", *, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.url = url


# --- origins ---------------------------------------------------------------------------


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host[:port]`` as httpx will connect to it: lower case, IDNA-encoded host,
    default port dropped (``HTTP://Example.com:80/x`` gives ``http://example.com``)."""
    parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    return _origin(parsed.scheme, parsed.raw_host, parsed.port)


@functools.lru_cache(maxsize=256)  # every request asks, two or three times, of few origins
def _origin(scheme: str, raw_host: bytes, port: int | None) -> str:
    host = raw_host.decode("ascii").lower()
    host = f"[{host}]" if ":" in host else host
    scheme = scheme.lower()
    port = None if port == DEFAULT_PORTS.get(scheme) else port
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def endpoint_of(origin: str) -> tuple[str, int]:
    """The ``(host, port)`` a connection to ``origin`` goes to."""
    parsed = httpx.URL(origin)
    port = parsed.port or DEFAULT_PORTS[parsed.scheme.lower()]
    return parsed.raw_host.decode("ascii").lower(), port


def parse_origin(text: str) -> str:
    """Validate one ``allowed_origins`` entry: an http(s) origin, nothing after the port."""
    try:
        parsed = httpx.URL(text.strip())
    except httpx.InvalidURL as exc:
        raise ValueError(f"{text!r} is not a URL: {exc}") from None
    if parsed.scheme.lower() not in DEFAULT_PORTS or not parsed.host:
        raise ValueError(f"{text!r}: expected an origin such as https://api.example.com")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.userinfo:
        raise ValueError(f"{text!r}: an origin is scheme://host[:port], without a path")
    return origin_of(parsed)


def _parse_origins(values: list[str]) -> list[str]:
    return [parse_origin(value) for value in values]


# A config field: ``allowed_origins: [https://cdn.example.com]``.
OriginList = Annotated[list[str], AfterValidator(_parse_origins)]


# --- addresses -------------------------------------------------------------------------


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in the resolver's order. Tests replace this
    module attribute to stub DNS (``api.test`` -> 127.0.0.1)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_refusal(address: str, named: bool) -> str | None:
    """Why a connection to ``address`` is refused, or None when it is allowed.

    ``named``: the host is one the service's config names, so a private or loopback
    address is allowed (an internal API); metadata and link-local never are.
    """
    ip = _unwrap(ipaddress.ip_address(address.split("%", 1)[0]))
    for network, label in DENIED_NETWORKS:
        if ip.version == network.version and ip in network:
            return label
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved and not ip.is_loopback:  # ::1 sits inside the reserved ::/8
        return "a reserved address"
    if not named and not ip.is_global:
        return "a private or loopback address, allowed only for hosts the config names"
    return None


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address, so
    ``::ffff:169.254.169.254`` is judged as 169.254.169.254."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


# --- the policy ------------------------------------------------------------------------


@dataclass(frozen=True)
class EgressPolicy:
    """What one service may reach. ``named``: origins the config names (private addresses
    allowed for their hosts); ``in_scope``: more URLs that may be requested (the crawl's
    ``allowed_domains``), public addresses only; ``credential_origins``: where credentials go.
    """

    named: frozenset[str]
    credential_origins: frozenset[str]
    in_scope: Callable[[str], bool] | None = None
    resolver: Resolver | None = None  # None: this module's :func:`resolve`, looked up per call
    _named_endpoints: frozenset[tuple[str, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        endpoints = frozenset(endpoint_of(origin) for origin in self.named)
        object.__setattr__(self, "_named_endpoints", endpoints)

    @classmethod
    def build(
        cls,
        named: Iterable[str],
        credential_origins: Iterable[str],
        in_scope: Callable[[str], bool] | None = None,
    ) -> EgressPolicy:
        """A policy from URLs or origins as written in a config."""
        return cls(
            frozenset(origin_of(url) for url in named),
            frozenset(origin_of(url) for url in credential_origins),
            in_scope,
        )

    def permits(self, url: str | httpx.URL) -> bool:
        try:
            origin = origin_of(url)
        except httpx.InvalidURL:
            return False
        if origin in self.named:
            return True
        return self.in_scope is not None and self.in_scope(str(url))

    def check_origin(self, url: str | httpx.URL, what: str = "request to") -> None:
        """Raise :class:`EgressRefused` unless ``url`` may be requested."""
        if not self.permits(url):
            raise self.refusal(url, what)

    def refusal(self, url: str | httpx.URL, what: str) -> EgressRefused:
        text = mask_url(str(url))
        try:
            origin = origin_of(url)
        except httpx.InvalidURL:
            origin = text
        return EgressRefused(
            f"{what} {text} refused: {origin} is not an origin this service's config names "
            f"(add it to the source's {OPT_IN_KEY} to allow it)",
            text,
        )

    def gets_credentials(self, url: str | httpx.URL) -> bool:
        """True when auth, api keys, custom headers and cookies may go to ``url``."""
        try:
            return origin_of(url) in self.credential_origins
        except httpx.InvalidURL:
            return False

    def checked_addresses(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` once; return its addresses when every one is allowed, else raise
        :class:`EgressRefused` (no connection is attempted). DNS failures raise OSError."""
        host = host.strip("[]").lower()
        named = (host, port) in self._named_endpoints
        try:
            addresses = [str(ipaddress.ip_address(host.split("%", 1)[0]))]
        except ValueError:
            addresses = (self.resolver or resolve)(host, port)
        if not addresses:
            raise OSError(f"{host} has no address")
        for address in addresses:  # one bad answer refuses the name: it is not trustworthy
            why = address_refusal(address, named)
            if why is not None:
                shown = host if host == address else f"{host} ({address})"
                raise EgressRefused(
                    f"connection to {shown}:{port} refused: {why}",
                    f"{host}:{port}",
                    reason="address_refused",
                )
        return addresses

    def check_url(self, url: str) -> None:
        """Both rules for a URL another client will fetch (Chromium): origin, then address."""
        self.check_origin(url)
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
        self.checked_addresses(host, parsed.port or DEFAULT_PORTS.get(parsed.scheme.lower(), 443))
