"""Serving the dashboard (or any ASGI app) with uvicorn in a thread, on a loopback socket
bound before the server starts, so tests talk to it over real HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from module_system.dashboard import DashboardSettings, create_app
from module_system.state import StateStore


@contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app``; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def dashboard(
    store: StateStore, registry: Path | None = None, log_dir: Path | None = None, **settings: Any
) -> Iterator[str]:
    """The dashboard over ``store``, served on loopback."""
    app = create_app(
        DashboardSettings(state_url=store.url, registry_path=registry, log_dir=log_dir, **settings),
        store,
    )
    with serving(app) as url:
        yield url
