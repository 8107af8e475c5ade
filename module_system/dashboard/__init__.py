"""The web dashboard: runs, jobs and files from the state store, live; Prometheus metrics.

Needs the ``dashboard`` extra (Starlette, Jinja2, uvicorn, prometheus_client).
"""

from module_system.dashboard.app import create_app, serve
from module_system.dashboard.settings import DashboardSettings

__all__ = ["DashboardSettings", "create_app", "serve"]
