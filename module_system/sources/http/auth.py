"""Authentication of API requests: the config models (secrets typed as ``SecretStr``) and
the :class:`httpx.Auth` each one builds.

    api_key                    a key in a header or a query parameter
    basic                      HTTP Basic
    bearer                     a fixed ``Authorization: Bearer`` token
    oauth2_client_credentials  a token fetched from ``token_url``, cached, refreshed before
                               it expires (and once more if the API answers 401)

Credentials go only to the origin of the configured URL (and, for OAuth2, the token URL);
``origins: [...]`` in the auth block names more origins that may receive them.
"""

from __future__ import annotations

import threading
import time
from base64 import b64encode
from collections.abc import Callable, Generator
from typing import Annotated, Any, Literal

import httpx
import orjson
from pydantic import Field, SecretStr

from module_system.config.models import StrictModel
from module_system.errors import TerminalError
from module_system.observability.redaction import mask_url, redact, register_secret
from module_system.sources.http.client import cap_stream, status_error
from module_system.sources.http.egress import OriginList

TOKEN_BODY_BYTES = 64 * 1024  # a token answer is a few hundred bytes


class _AuthConfig(StrictModel):
    origins: OriginList = Field(
        default_factory=list, description="more origins that may receive the credentials"
    )


class ApiKeyAuthConfig(_AuthConfig):
    """``{type: api_key, name: X-API-Key, in: header, api_key: ${KEY}}``."""

    type: Literal["api_key"] = Field(description="a key in a header or a query parameter")
    api_key: SecretStr = Field(description="the key; a secret (use ${VAR})")
    name: str = Field("X-API-Key", description="name of the header or query parameter")
    location: Literal["header", "query"] = Field(
        "header", alias="in", description="where the key goes: a header or the query"
    )

    def build(self) -> httpx.Auth:
        return ApiKeyAuth(self.name, self.api_key.get_secret_value(), self.location)


class BasicAuthConfig(_AuthConfig):
    type: Literal["basic"] = Field(description="HTTP Basic")
    username: str = Field(description="user name")
    password: SecretStr = Field(description="password; a secret (use ${VAR})")

    def build(self) -> httpx.Auth:
        return httpx.BasicAuth(self.username, self.password.get_secret_value())


class BearerAuthConfig(_AuthConfig):
    type: Literal["bearer"] = Field(description="a fixed token: Authorization: Bearer ...")
    token: SecretStr = Field(description="the token; a secret (use ${VAR})")

    def build(self) -> httpx.Auth:
        return BearerAuth(self.token.get_secret_value())


class OAuth2ClientCredentialsConfig(_AuthConfig):
    """RFC 6749 section 4.4. ``client_auth: body`` sends the client id and secret as form
    fields (most providers); ``basic`` sends them as HTTP Basic (the RFC's default)."""

    type: Literal["oauth2_client_credentials"] = Field(
        description="a token fetched from token_url, cached, refreshed before it expires"
    )
    token_url: str = Field(
        description="where tokens are requested (POST, grant client_credentials)"
    )
    client_id: str = Field(description="the client's id")
    client_secret: SecretStr = Field(description="the client's secret; a secret (use ${VAR})")
    scope: str | None = Field(None, description="scope of the token request; unset: not sent")
    audience: str | None = Field(None, description="audience of the token request; unset: not sent")
    client_auth: Literal["body", "basic"] = Field(
        "body", description="body: id and secret as form fields; basic: as HTTP Basic"
    )
    refresh_leeway: float = Field(60.0, ge=0, description="renew this long before expiry")

    def build(self) -> httpx.Auth:
        return OAuth2ClientCredentials(self)


AuthConfig = Annotated[
    ApiKeyAuthConfig | BasicAuthConfig | BearerAuthConfig | OAuth2ClientCredentialsConfig,
    Field(discriminator="type"),
]


class ApiKeyAuth(httpx.Auth):
    def __init__(self, name: str, key: str, location: str) -> None:
        self.name, self.key, self.location = name, key, location

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.location == "query":
            request.url = request.url.copy_merge_params({self.name: self.key})
        else:
            request.headers[self.name] = self.key
        yield request


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


class OAuth2ClientCredentials(httpx.Auth):
    """Fetches a token through the same client, caches it until ``refresh_leeway`` seconds
    before ``expires_in`` runs out, and fetches a new one once when the API answers 401.

    Several threads may send through one instance (the API source's read-ahead): a lock
    lets one of them fetch a token while the others wait for it, and a 401 fetches a new
    token only if no other thread has replaced the refused one meanwhile. Only token
    answers are read here (capped): API pages are read by the caller, within its own
    ``max_response_bytes``.
    """

    def __init__(
        self, config: OAuth2ClientCredentialsConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config, self.clock = config, clock
        self._token: str | None = None
        self._expires_at = 0.0
        self.tokens_fetched = 0
        self._lock = threading.Lock()  # held while a token is fetched, across the yield

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """:meth:`auth_flow` delegated to with ``yield from``, so that httpx closing this
        flow (after an error) closes it too, at once, releasing the lock it may hold."""
        yield from self.auth_flow(request)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at:
                self._store(self._parse((yield self._token_request())))
            token = self._token
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one fresh token
            cap_stream(response, TOKEN_BODY_BYTES, "401 answer")
            response.read()  # and its connection back to the pool before waiting for the lock
            with self._lock:
                if self._token == token:  # not replaced by another thread meanwhile
                    self._store(self._parse((yield self._token_request())))
                token = self._token
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def _token_request(self) -> httpx.Request:
        cfg = self.config
        secret = cfg.client_secret.get_secret_value()
        form = {"grant_type": "client_credentials"}
        form |= {k: v for k, v in (("scope", cfg.scope), ("audience", cfg.audience)) if v}
        headers = {"Accept": "application/json"}
        if cfg.client_auth == "basic":
            pair = b64encode(f"{cfg.client_id}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {pair}"
        else:
            form |= {"client_id": cfg.client_id, "client_secret": secret}
        return httpx.Request("POST", cfg.token_url, data=form, headers=headers)

    def _parse(self, response: httpx.Response) -> dict[str, Any]:
        where = f"OAuth2 token request to {mask_url(self.config.token_url)}"
        cap_stream(response, TOKEN_BODY_BYTES, where)
        body = response.read()
        status = response.status_code
        if status >= 400:
            text = redact(body[:200].decode("utf-8", "replace"))
            raise status_error(status, f"{where}: HTTP {status}: {text}")
        if status >= 300:
            raise TerminalError(f"{where}: HTTP {status}: token requests are not redirected")
        try:
            token = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise TerminalError(f"{where}: the answer is not JSON") from None
        if not isinstance(token, dict) or not token.get("access_token"):
            raise TerminalError(f"{where}: the answer has no access_token")
        return token

    def _store(self, token: dict[str, Any]) -> None:
        self._token = str(token["access_token"])
        register_secret(self._token)  # fetched at run time, still a secret
        lifetime = float(token.get("expires_in") or 3600)
        leeway = min(self.config.refresh_leeway, lifetime / 10)
        self._expires_at = self.clock() + lifetime - leeway
        self.tokens_fetched += 1
