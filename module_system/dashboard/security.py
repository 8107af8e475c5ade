"""Who may read the dashboard and press its buttons.

* With a token (required beyond loopback), every request but the sign-in page and the
  static files needs it: as ``Authorization: Bearer <token>`` (API, Prometheus) or as the
  session cookie the sign-in form sets (browsers). Tokens never travel in URLs, where
  they would end up in histories and access logs.
* Without a token the dashboard is bound to loopback, and answers only requests whose
  ``Host`` is a loopback name, so a web page cannot reach it through DNS rebinding.
* The re-run button is a POST carrying a CSRF token that must match a SameSite cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from module_system.dashboard.settings import DashboardSettings, is_loopback

SESSION_COOKIE = "ms_dashboard_session"
CSRF_COOKIE = "ms_dashboard_csrf"
PUBLIC_PATHS = ("/login", "/static/")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def session_value(token: str) -> str:
    """The cookie a signed-in browser carries: derived from the token, not the token."""
    return hmac.new(token.encode(), b"module-system dashboard session", hashlib.sha256).hexdigest()


def token_equals(given: str, token: str) -> bool:
    return hmac.compare_digest(given.strip().encode(), token.encode())


def token_matches(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_equals(given, token):
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith("/api/") or path == "/metrics":
        return False
    return "text/html" in request.headers.get("accept", "")


class Guard:
    """ASGI middleware applying the rules of this module to every HTTP request."""

    def __init__(self, app: ASGIApp, settings: DashboardSettings) -> None:
        self.app = app
        self.token = settings.token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        denial = self._denial(request)
        if denial is not None:
            await denial(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers.extend(
                    (k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                )
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _denial(self, request: Request) -> Response | None:
        if self.token is None:
            host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
            if is_loopback(host):
                return None
            return JSONResponse({"error": "this dashboard answers on loopback only"}, 421)
        if request.url.path.startswith(PUBLIC_PATHS) or token_matches(request, self.token):
            return None
        if wants_html(request):
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        return JSONResponse(
            {"error": "a token is required: Authorization: Bearer <token>"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="module-system dashboard"'},
        )


def csrf_token(request: Request) -> tuple[str, bool]:
    """The browser's CSRF token, and whether it is new (then set it as a cookie)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) == 43:
        return existing, False
    return secrets.token_urlsafe(32), True


def set_csrf_cookie(response: Response, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict", path="/")


def csrf_ok(request: Request, submitted: object) -> bool:
    """A form post is ours when its field matches the cookie and it came from our origin."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not isinstance(submitted, str):
        return False
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        return False
    return hmac.compare_digest(cookie.encode(), submitted.encode())


def safe_next(target: str | None) -> str:
    """Only local paths: the sign-in form must not redirect anywhere else."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
