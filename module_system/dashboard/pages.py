"""The HTML pages: rendered on the server, readable without JavaScript.

``?fragment=1`` renders only a page's main part: the page's script fetches it every
``poll_seconds`` while something on the page is running, and swaps it in.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from module_system.dashboard import format as fmt
from module_system.dashboard.logs import job_log
from module_system.dashboard.security import (
    SESSION_COOKIE,
    csrf_ok,
    csrf_token,
    safe_next,
    session_value,
    set_csrf_cookie,
    token_equals,
)
from module_system.errors import ConfigError
from module_system.orchestrator.rerun import NothingToRerun
from module_system.state import queries

RUNS_PER_PAGE = 50
FILES_PER_PAGE = 200


def _dashboard(request: Request) -> Any:
    return request.app.state.dashboard


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(1, int(raw)) if raw.isdigit() else 1


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
    dashboard = _dashboard(request)
    token, new = csrf_token(request)
    fragment = request.query_params.get("fragment") == "1"
    context = {
        "csrf": token,
        "poll_ms": int(dashboard.settings.poll_seconds * 1000),
        "state_label": dashboard.state_label,
        "main_template": template,
        "signed_in": dashboard.settings.token is not None,
        "section": "",
        "live": False,
        **context,
    }
    name = template if fragment else "page.html"
    response = dashboard.templates.TemplateResponse(request, name, context, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    if new:
        set_csrf_cookie(response, token)
    return response


def not_found(request: Request, what: str) -> Response:
    return render(request, "missing.html", {"title": "Not found", "what": what}, 404)


def runs_page(request: Request) -> Response:
    dashboard = _dashboard(request)
    status = request.query_params.get("status") or None
    service = request.query_params.get("service") or None
    engine = dashboard.store.engine
    page = queries.list_runs(engine, status=status, service=service,
                             page=_page_number(request), per_page=RUNS_PER_PAGE)  # fmt: skip
    services = sorted(set(queries.known_services(engine)) | set(dashboard.registry_services()))
    live = any(run.status == "running" for run in page.runs)
    return render(request, "runs.html", {
        "title": "Runs", "section": "runs", "page": page, "status": status, "service": service,
        "services": services, "run_statuses": fmt.RUN_STATUSES, "live": live,
        "filters": {"status": status, "service": service},
    })  # fmt: skip


def run_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    dashboard = _dashboard(request)
    run_id = request.path_params["run_id"]
    detail = queries.run_detail(dashboard.store.engine, run_id)
    if detail is None:
        return not_found(request, f"run {run_id}")
    rerunnable = [j for j in detail.jobs if j.status in queries.RERUNNABLE]
    return render(request, "run.html", {
        "title": f"Run {run_id}", "section": "runs", "detail": detail, "run": detail.run,
        "timeline": fmt.timeline(detail.run, detail.jobs), "rerunnable": rerunnable,
        "can_rerun": dashboard.reruns.registry_path() is not None, "error": error,
        "live": detail.run.status == "running",
    }, status_code)  # fmt: skip


async def rerun(request: Request) -> Response:
    dashboard = _dashboard(request)
    form = await request.form()
    if not csrf_ok(request, form.get("csrf")):
        return await run_in_threadpool(run_page, request, "The form expired: press the button "
                                       "again.", 403)  # fmt: skip
    try:
        new_run = await run_in_threadpool(dashboard.reruns.start, request.path_params["run_id"])
    except (ConfigError, NothingToRerun) as exc:
        return await run_in_threadpool(run_page, request, str(exc), 409)
    return RedirectResponse(f"/runs/{new_run}", status_code=303)


def job_page(request: Request) -> Response:
    dashboard = _dashboard(request)
    run_id, job_id = request.path_params["run_id"], request.path_params["job_id"]
    engine = dashboard.store.engine
    job = queries.job_detail(engine, run_id, job_id)
    if job is None:
        return not_found(request, f"job {job_id} of run {run_id}")
    outcome = request.query_params.get("outcome")
    outcome = outcome if outcome in fmt.FILE_OUTCOMES else None
    files = queries.job_files(engine, run_id, job_id, outcome=outcome,
                              page=_page_number(request), per_page=FILES_PER_PAGE)  # fmt: skip
    return render(request, "job.html", {
        "title": f"Job {job_id}", "section": "runs", "job": job, "files": files,
        "outcome": outcome, "outcomes": fmt.FILE_OUTCOMES, "filters": {"outcome": outcome},
        "log": job_log(dashboard.settings.log_dir, job),
        "live": job.status in ("running", "pending"),
    })  # fmt: skip


def services_page(request: Request) -> Response:
    dashboard = _dashboard(request)
    services = queries.services_summary(dashboard.store.engine, dashboard.registry_services())
    return render(request, "services.html",
                  {"title": "Services", "section": "services", "services": services})  # fmt: skip


def metrics(request: Request) -> Response:
    """Prometheus text, or OpenMetrics when the scraper asks for it."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encoder(_dashboard(request).metrics)
    return Response(body, headers={"Content-Type": content_type})


async def login(request: Request) -> Response:
    dashboard = _dashboard(request)
    target = safe_next(request.query_params.get("next"))
    token = dashboard.settings.token
    if token is None:
        return RedirectResponse("/", status_code=303)
    if request.method == "GET":
        return render(request, "login.html", {"title": "Sign in", "next": target})
    form = await request.form()
    given = form.get("token")
    if isinstance(given, str) and token_equals(given, token):
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, session_value(token), httponly=True,
                            samesite="strict", path="/")  # fmt: skip
        return response
    context = {"title": "Sign in", "next": target, "wrong": True}
    return render(request, "login.html", context, 401)


async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


ROUTES = [
    Route("/", runs_page),
    Route("/runs/{run_id}", run_page),
    Route("/runs/{run_id}/rerun", rerun, methods=["POST"]),
    Route("/runs/{run_id}/jobs/{job_id}", job_page),
    Route("/services", services_page),
    Route("/metrics", metrics),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
]
