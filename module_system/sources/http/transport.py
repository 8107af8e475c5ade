"""The one httpx client factory: every HTTP request of the API source, the crawl, robots.txt,
sitemaps and the OAuth2 token request goes through a client made here.

Connections are opened by :class:`PinnedBackend`, an httpcore network backend that resolves
the host once, checks every address against the service's :class:`EgressPolicy`, and
connects to a checked address. httpcore still sends the host name as TLS SNI and checks the
certificate against it, and httpx sends it in ``Host``; only the socket's peer is pinned.
So there is no window between the check and the connection for a DNS answer to change.

Redirects are never followed by httpx (``follow_redirects=False``): callers follow them hop
by hop and check each hop's origin. Environment proxies are not used: a proxy would resolve
names itself, out of reach of the address check.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import httpcore
import httpx

from module_system.sources.http.egress import EgressPolicy, EgressRefused

DEFAULT_CONNECTIONS = 10
HTTP_1_1 = ["http/1.1"]  # the only ALPN protocol offered (httpx without http2)


class PinnedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows, the very addresses it checked."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.policy.checked_addresses(host, port)
        except OSError as exc:  # DNS failure: httpx reports it as a ConnectError
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: httpcore.ConnectError | None = None
        for address in addresses:  # like socket.create_connection, first that answers wins
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # checked_addresses never returns an empty list
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise EgressRefused(f"unix socket {path} refused: only TCP is used", path)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS settings (the CA bundle, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``
    from the environment), made once a process for each such setting: loading the CA
    bundle costs ~20 ms of CPU, as much as 40 small requests, and a batch makes a client a
    job. httpcore only reads it, but for ALPN (see :func:`_ssl_context`)."""
    return _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=4)
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    context = httpx.create_ssl_context()  # reads the same two variables
    context.set_alpn_protocols(HTTP_1_1)
    # httpcore sets ALPN on the context for every connection it opens. Setting it frees the
    # old value in OpenSSL, while another thread may be copying it into a new connection
    # (CPython lets go of the GIL around SSL_new): set once, the same value is not set again.
    set_alpn = context.set_alpn_protocols

    def set_alpn_once(protocols: Iterable[str]) -> None:
        if list(protocols) != HTTP_1_1:
            set_alpn(protocols)

    context.set_alpn_protocols = set_alpn_once  # type: ignore[method-assign, assignment]
    return context


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport with its connection pool opening sockets through
    :class:`PinnedBackend` (TLS settings from the environment, as httpx's default)."""

    def __init__(self, policy: EgressPolicy, limits: httpx.Limits) -> None:
        ssl_context = shared_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(policy),
        )


class _SetCookiesOnly(httpx.Cookies):
    """httpx's cookie jar, consulted only for a response that sets a cookie. httpx hands
    every response to the jar, building urllib adapters of the request and response for it:
    ~10 % of a small request's CPU, for the many APIs and sites that set none."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class PinnedClient(httpx.Client):
    """:class:`httpx.Client` with the :class:`_SetCookiesOnly` jar (same cookies, kept and
    sent as httpx does)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cookies = self._cookies  # httpx set its own jar directly: wrapped, by the setter

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._cookies = _SetCookiesOnly(cookies)


def make_client(
    policy: EgressPolicy,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    connections: int = DEFAULT_CONNECTIONS,
) -> httpx.Client:
    """An :class:`httpx.Client` bound to ``policy``: pinned connections, no redirects
    followed, no proxies. ``headers`` are sent on every request: never put credentials
    here (see :meth:`EgressPolicy.gets_credentials`)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return PinnedClient(
        transport=PinnedTransport(policy, limits),
        headers=headers,
        timeout=timeout,
        follow_redirects=False,
    )
