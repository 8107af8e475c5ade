"""The JSON API behind the pages, and its OpenAPI description.

Responses are the query layer's dataclasses, serialised by pydantic; the OpenAPI schema
is generated from the same dataclasses, so the two cannot drift apart.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from module_system.dashboard.format import FILE_OUTCOMES
from module_system.state import queries
from module_system.state.queries import (
    MAX_PER_PAGE,
    FilePage,
    JobSummary,
    RunDetail,
    RunPage,
    ServiceSummary,
)

MAX_PAGE = 1_000_000


class BadParameter(ValueError):
    pass


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _json(kind: Any, value: Any) -> JSONResponse:
    return JSONResponse(_adapter(kind).dump_python(value, mode="json"))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise BadParameter(f"{name} must be between {low} and {high}")
    return value


def _engine(request: Request) -> Any:
    return request.app.state.dashboard.store.engine


def api_runs(request: Request) -> JSONResponse:
    try:
        page = _int(request, "page", 1, 1, MAX_PAGE)
        per_page = _int(request, "per_page", 50, 1, MAX_PER_PAGE)
    except BadParameter as exc:
        return _error(400, str(exc))
    params = request.query_params
    result = queries.list_runs(_engine(request), status=params.get("status") or None,
                               service=params.get("service") or None, page=page,
                               per_page=per_page)  # fmt: skip
    return _json(RunPage, result)


def api_run(request: Request) -> JSONResponse:
    detail = queries.run_detail(_engine(request), request.path_params["run_id"])
    return _json(RunDetail, detail) if detail else _error(404, "no such run")


def api_job(request: Request) -> JSONResponse:
    p = request.path_params
    job = queries.job_detail(_engine(request), p["run_id"], p["job_id"])
    return _json(JobSummary, job) if job else _error(404, "no such job")


def api_job_files(request: Request) -> JSONResponse:
    p = request.path_params
    outcome = request.query_params.get("outcome") or None
    try:
        page = _int(request, "page", 1, 1, MAX_PAGE)
        per_page = _int(request, "per_page", 200, 1, MAX_PER_PAGE)
        if outcome is not None and outcome not in FILE_OUTCOMES:
            raise BadParameter(f"outcome must be one of {', '.join(FILE_OUTCOMES)}")
    except BadParameter as exc:
        return _error(400, str(exc))
    engine = _engine(request)
    if queries.job_detail(engine, p["run_id"], p["job_id"]) is None:
        return _error(404, "no such job")
    files = queries.job_files(engine, p["run_id"], p["job_id"], outcome=outcome, page=page,
                              per_page=per_page)  # fmt: skip
    return _json(FilePage, files)


def api_services(request: Request) -> JSONResponse:
    dashboard = request.app.state.dashboard
    services = queries.services_summary(dashboard.store.engine, dashboard.registry_services())
    return _json(list[ServiceSummary], services)


def api_schema(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


ROUTES = [
    Route("/api/runs", api_runs),
    Route("/api/runs/{run_id}", api_run),
    Route("/api/jobs/{run_id}/{job_id}", api_job),
    Route("/api/jobs/{run_id}/{job_id}/files", api_job_files),
    Route("/api/services", api_services),
    Route("/api/openapi.json", api_schema),
]


# OpenAPI -------------------------------------------------------------------------------
def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schemas of the response types, as components, and a ref to each."""
    components: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "string"}},
            "required": ["error"],
        }
    }
    refs: dict[str, Any] = {}
    kinds = {"RunPage": RunPage, "RunDetail": RunDetail, "JobSummary": JobSummary,
             "FilePage": FilePage, "ServiceList": list[ServiceSummary]}  # fmt: skip
    for name, kind in kinds.items():
        schema = _adapter(kind).json_schema(
            ref_template="#/components/schemas/{model}", mode="serialization"
        )
        components.update(schema.pop("$defs", {}))
        if "$ref" in schema:
            refs[name] = schema
        else:
            components[name] = schema
            refs[name] = {"$ref": f"#/components/schemas/{name}"}
    return components, refs


def _query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _responses(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    texts = {400: "bad parameter", 401: "token required", 404: "not found"}
    responses = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
    for code in (*errors, 401):
        responses[str(code)] = {"description": texts[code], "content": error}
    return responses


@cache
def openapi_document() -> dict[str, Any]:
    components, refs = _schemas()
    page = _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, "page, from 1")
    per_page = _query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
                      "rows per page")  # fmt: skip
    outcome = _query("outcome", {"type": "string", "enum": list(FILE_OUTCOMES)},
                     "only files with this outcome")  # fmt: skip
    runs_filters = [
        _query("status", {"type": "string"}, "run status: running, completed, failed, ..."),
        _query("service", {"type": "string"}, "runs with a job of this service"),
    ]
    paths = {
        "/api/runs": {"get": {"summary": "Runs, newest first", "operationId": "listRuns",
                              "parameters": [*runs_filters, page, per_page],
                              "responses": _responses(refs["RunPage"], 400)}},
        "/api/runs/{run_id}": {"get": {"summary": "A run and its jobs", "operationId": "getRun",
                                       "parameters": [_path("run_id")],
                                       "responses": _responses(refs["RunDetail"], 404)}},
        "/api/jobs/{run_id}/{job_id}": {"get": {
            "summary": "A job of a run", "operationId": "getJob",
            "parameters": [_path("run_id"), _path("job_id")],
            "responses": _responses(refs["JobSummary"], 404)}},
        "/api/jobs/{run_id}/{job_id}/files": {"get": {
            "summary": "The files of a job, with their outcomes", "operationId": "listJobFiles",
            "parameters": [_path("run_id"), _path("job_id"), outcome, page, per_page],
            "responses": _responses(refs["FilePage"], 400, 404)}},
        "/api/services": {"get": {"summary": "Services: last run, last success, state",
                                  "operationId": "listServices",
                                  "responses": _responses(refs["ServiceList"])}},
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "Module System dashboard API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"token": []}],  # a token only when the dashboard has one
    }
