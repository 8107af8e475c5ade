"""Demo part: a weather API on loopback, paginated by ``next_url`` and behind a bearer token.

It serves 48 hourly observations of station ST001, 20 per page, one of them broken on
purpose (a temperature of ``"n/a"``) so the demo shows a page going to quarantine with the
record and field at fault. ``since`` filters on ``updated_at``, so a second demo run against
the same state finds nothing new.
"""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from module_system.demo.context import DemoContext

PER_PAGE = 20


def observations(count: int = 48) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 27, tzinfo=UTC)
    rows: list[dict[str, Any]] = []
    for hour in range(count):
        at = (start + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")
        reading = {"temperature_c": 4 + hour % 9 * 0.8, "humidity_pct": 60 + hour % 30}
        rows.append({"station": "ST001", "observed_at": at, **reading, "wind_kph": hour % 25,
                     "updated_at": at})  # fmt: skip
    rows[29]["temperature_c"] = "n/a"  # a sensor fault: the second page goes to quarantine
    return rows


def weather_app(token: str, rows: list[dict[str, Any]]) -> Starlette:
    """``GET /v1/observations?station=ST001&since=...&page=N`` with ``Authorization: Bearer``."""

    def listing(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        query = request.query_params
        since, page = query.get("since", ""), int(query.get("page", "1"))
        wanted = [r for r in rows if r["station"] == query.get("station", "ST001")]
        wanted = [r for r in wanted if r["updated_at"] > since]
        items = wanted[(page - 1) * PER_PAGE : page * PER_PAGE]
        following = {**query, "page": str(page + 1)}
        more = page * PER_PAGE < len(wanted)
        next_url = f"{request.url.path}?{urlencode(following)}" if more else None
        return JSONResponse({"data": {"items": items}, "page": page, "next_url": next_url})

    return Starlette(routes=[Route("/v1/observations", listing)])


class ThreadedServer:
    """uvicorn serving an ASGI app in a daemon thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; return the base URL."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the demo weather API did not start")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class ApiDemoData:
    """Starts the weather API and exports ``WEATHER_API_URL`` and ``WEATHER_TOKEN``."""

    name = "api"

    def __init__(self) -> None:
        self._server: ThreadedServer | None = None

    def start(self, ctx: DemoContext) -> None:
        token = secrets.token_urlsafe(24)
        self._server = ThreadedServer(weather_app(token, observations()))
        ctx.env["WEATHER_API_URL"] = self._server.start()
        ctx.env["WEATHER_TOKEN"] = token

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
