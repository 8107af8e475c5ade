"""The dashboard's Starlette application and the function that serves it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
import uvicorn
import yaml
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from module_system.dashboard import format as fmt
from module_system.dashboard import json_api, pages
from module_system.dashboard.runner import Reruns
from module_system.dashboard.security import Guard
from module_system.dashboard.settings import DashboardSettings
from module_system.observability.metrics import metrics_registry
from module_system.observability.redaction import mask_url
from module_system.state import StateStore, queries

log = logging.getLogger("module_system.dashboard")
PACKAGE_DIR = Path(__file__).resolve().parent


class Dashboard:
    """What every request handler shares (``request.app.state.dashboard``)."""

    def __init__(self, settings: DashboardSettings, store: StateStore) -> None:
        self.settings = settings
        self.store = store
        # A SQLite URL holds no secret, and mask_url's round trip drops its slashes.
        self.state_label = store.url if store.url.startswith("sqlite") else mask_url(store.url)
        self.reruns = Reruns(settings, store)
        self.metrics: CollectorRegistry = metrics_registry(
            lambda: queries.metrics_snapshot(store.engine)
        )
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(PACKAGE_DIR / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        environment.filters.update(fmt.FILTERS)
        self.templates = Jinja2Templates(env=environment)

    def registry_services(self) -> dict[str, tuple[str, str]]:
        """Service id -> (type, description), from the registry file as written (no
        ${VAR} needed): the services page lists services that never ran too."""
        path = self.reruns.registry_path()
        if path is None:
            return {}
        try:
            services = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("services")
        except (OSError, yaml.YAMLError):
            return {}
        if not isinstance(services, dict):
            return {}
        return {
            str(sid): (str(conf.get("type", "")), str(conf.get("description", "")))
            for sid, conf in services.items()
            if isinstance(conf, dict)
        }


def create_app(settings: DashboardSettings, store: StateStore | None = None) -> Starlette:
    """The dashboard over ``store`` (default: the store ``settings.state_url`` names)."""
    settings.check()
    dashboard = Dashboard(settings, store or StateStore(settings.state_url))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        dashboard.reruns.shutdown()

    static = StaticFiles(directory=PACKAGE_DIR / "static")
    app = Starlette(
        routes=[*pages.ROUTES, *json_api.ROUTES, Mount("/static", static, name="static")],
        middleware=[Middleware(Guard, settings=settings)],
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    return app


def serve(settings: DashboardSettings, **uvicorn_options: Any) -> None:
    """Serve the dashboard until interrupted (Ctrl-C)."""
    app = create_app(settings)
    log.info("dashboard on http://%s:%d/ (state %s)", settings.host, settings.port,
             app.state.dashboard.state_label)  # fmt: skip
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False,
                log_level="warning", **uvicorn_options)  # fmt: skip
