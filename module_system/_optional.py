"""Optional dependencies: which extra brings which library, and a clear error when one is
missing.

The base install is light; protocol and feature libraries come with extras
(``pip install 'module-system[sftp]'``). Code that needs one either calls :func:`require`
or is loaded through a plugin registry, which turns the ``ModuleNotFoundError`` of a
known library into :class:`MissingExtra` (a configuration error: nothing runs).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from module_system.errors import ConfigError

# Top-level import name -> the extra that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    "paramiko": "sftp",
    "selectolax": "web",
    "protego": "web",
    "charset_normalizer": "web",
    "w3lib": "web",
    "playwright": "render",
    "psycopg": "postgres",
    "distributed": "dask",
    "dask": "dask",
    "starlette": "dashboard",
    "jinja2": "dashboard",
    "uvicorn": "dashboard",
    "prometheus_client": "dashboard",
    "pyarrow": "fast-csv",
    "openlineage": "lineage",
    "moto": "demo",
    "pyftpdlib": "demo",
}


class MissingExtra(ConfigError):
    """A feature the configuration asks for needs an extra that is not installed."""

    default_reason = "missing_extra"

    def __init__(self, what: str, module: str, extra: str) -> None:
        self.module, self.extra = module, extra
        super().__init__(
            f"{what} needs the Python package '{module}', which is not installed: "
            f"pip install 'module-system[{extra}]'"
        )


def require(module: str, *, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if _top_level(getattr(exc, "name", None) or module) != _top_level(module):
            raise  # the library is there but broken: show the real error
        raise MissingExtra(what or f"this feature ('{extra}')", module, extra) from None


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra_for(exc: ModuleNotFoundError, what: str) -> MissingExtra | None:
    """The :class:`MissingExtra` that explains ``exc``, or None when no extra brings the
    missing module (then ``exc`` is a real bug and should propagate)."""
    top = _top_level(exc.name or "")
    extra = EXTRA_OF_MODULE.get(top)
    return MissingExtra(what, top, extra) if extra else None


def _top_level(module: str) -> str:
    return module.partition(".")[0]
