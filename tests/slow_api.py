"""A deliberately slow REST API on loopback: each page takes ``delay`` seconds, so a job
against it runs long enough to be watched while it runs. One page has a record that breaks
the schema (its page is quarantined). Also: a registry and batch for jobs against it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.dashboard_helpers import serving
from tests.helpers import write_batch, write_registry

RECORD_SCHEMA = {
    "type": "object",
    "required": ["id", "temperature"],
    "properties": {"id": {"type": "integer"}, "temperature": {"type": "number"}},
}


@contextmanager
def slow_api(pages: int = 6, delay: float = 0.6, bad_page: int | None = 3) -> Iterator[str]:
    """Serve ``pages`` pages of 5 records; yields the observations URL."""

    async def observations(request: Request) -> JSONResponse:
        await asyncio.sleep(delay)
        page = int(request.query_params.get("page", "1"))
        if page > pages:
            return JSONResponse({"items": []})
        items: list[dict[str, Any]] = [
            {"id": page * 10 + n, "temperature": 20.5 + n} for n in range(5)
        ]
        if page == bad_page:
            items[2]["temperature"] = "hot"
        return JSONResponse({"items": items})

    app = Starlette(routes=[Route("/obs", observations)])
    with serving(app) as url:
        yield url + "/obs"


def api_service(url: str) -> dict[str, Any]:
    return {
        "type": "api",
        "source": {"url": url, "pagination": {"type": "page_number"}, "records_path": "items"},
        "validation": {"json_schema": RECORD_SCHEMA},
        "retry": {"attempts": 2, "backoff": 0.01},
    }


def missing_bucket_service(
    s3_url: str, bucket: str = "no-such-bucket-for-dashboard"
) -> dict[str, Any]:
    """An S3 service whose bucket does not exist (yet): its job fails at once."""
    return {
        "type": "s3",
        "source": {"bucket": bucket, "endpoint_url": s3_url},
        "validation": {"json_schema": RECORD_SCHEMA},
        "retry": {"attempts": 1},
    }


def write_files(
    folder: Path, landing: dict[str, Any], services: dict[str, Any], jobs: list[tuple[str, str]]
) -> tuple[Path, Path]:
    """registry.yaml and batch.json in ``folder``."""
    registry = write_registry(folder / "registry.yaml", landing, services)
    return registry, write_batch(folder / "batch.json", jobs, description="Dashboard test")


def read_report(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))
