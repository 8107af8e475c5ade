"""What the dashboard serves and how it is reached."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from module_system.errors import ConfigError

TOKEN_ENV = "MODULE_SYSTEM_DASHBOARD_TOKEN"
DEFAULT_PORT = 8765
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DashboardSettings:
    state_url: str | None = None  # None: $MODULE_SYSTEM_STATE_URL or the SQLite default
    registry_path: Path | None = None  # for the services page and re-runs
    log_dir: Path | None = None  # job log lines on the job page; re-runs log here
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    poll_seconds: float = 1.5  # how often an open page of a running run refreshes
    rerun_workers: int = 20

    def check(self) -> None:
        """Binding beyond loopback exposes runs and re-runs: only with a token."""
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"dashboard token: use at least {MIN_TOKEN_LENGTH} characters")
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"dashboard on {self.host}: binding beyond loopback needs a token "
                f"(--token or {TOKEN_ENV})"
            )
