"""The UI's FastAPI app (DESIGN §13): server-rendered pages and JSON endpoints over the registry.

Read-only: every route is a ``GET`` that runs the queries of :mod:`feature_rollout.ui.queries` in one
read transaction. Airflow-free: the plugin (:mod:`feature_rollout.plugins.feature_rollout`) passes in
where the registry is and Airflow's authentication dependency, so the same app is tested without a
running Airflow. Every user-controlled string reaches HTML through Jinja's autoescaping.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from feature_rollout.core.errors import FeatureRolloutError
from feature_rollout.redaction import redact
from feature_rollout.registry.engine import safe_url
from feature_rollout.registry.registry import Registry
from feature_rollout.ui import queries
from feature_rollout.ui.coverage import coverage_svg

#: Where the app is mounted in the Airflow API server (the operators' extra links point here).
URL_PREFIX = "/feature-rollout"

RegistrySource = Callable[[], Registry]

_ENV = Environment(loader=PackageLoader("feature_rollout.ui", "templates"), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)
_ENV.filters["q"] = lambda value: quote(str(value), safe="")
#: How the audit log's kinds read on a page (the JSON keeps the kinds).
EVENT_LABELS = {"promote": "promoted", "pin": "pinned", "rollback": "rolled back", "hold": "held",
                "release": "released", "delete": "deleted"}
_ENV.filters["event"] = lambda kind: EVENT_LABELS.get(kind, kind)
_ENV.filters["stamp"] = lambda value: value.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, datetime) \
    else str(value)


class RegistryUnreadable(Exception):
    """The registry could not be read (not configured, unreachable, or not migrated)."""


def create_app(registry: RegistrySource, *, dependencies: Sequence[Any] = ()) -> FastAPI:
    """The app. ``registry`` is called per request (the plugin caches); ``dependencies`` guard every
    route, the OpenAPI document included (the plugin passes Airflow's ``requires_authenticated()``)."""
    app = FastAPI(title="Feature rollout", version="1", dependencies=list(dependencies), docs_url=None,
                  redoc_url=None, openapi_url=None,
                  description="Read-only views of feature-store versions, coverage, parity reports and plans.")

    @contextmanager
    def reading() -> Iterator[Connection]:
        source: Registry | None = None
        try:
            source = registry()
            with source.reading() as conn:
                yield conn
        except (FeatureRolloutError, SQLAlchemyError) as err:
            raise RegistryUnreadable(_explain(err, source)) from err

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        airflow_root = root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else ""

        def with_param(name: str, value: Any) -> str:
            params = dict(request.query_params)
            params[name] = str(value)
            return f"?{urlencode(params)}"

        html = _ENV.get_template(template).render(root=root, airflow_root=airflow_root, with_param=with_param,
                                                  **context)
        return HTMLResponse(html, status_code=status)

    def wants_json(request: Request) -> bool:
        root = request.scope.get("root_path", "").rstrip("/")
        path = request.url.path
        return (path[len(root):] if root and path.startswith(root) else path).startswith("/api/")

    @app.exception_handler(RegistryUnreadable)
    def unreadable(request: Request, err: RegistryUnreadable) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": str(err)}, status_code=503)
        return page(request, "error.html", 503, title="The registry cannot be read", message=str(err))

    @app.exception_handler(HTTPException)
    def not_found(request: Request, err: HTTPException) -> Response:
        if wants_json(request) or err.status_code in (401, 403):
            return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=err.headers)
        return page(request, "error.html", err.status_code, title="Not found", message=str(err.detail))

    def require(value: Any, what: str) -> Any:
        if value is None:
            raise HTTPException(404, f"{what} does not exist in the registry.")
        return value

    # --- data (shared by the HTML pages and the JSON endpoints) ---------------------------------

    def workspace_views(workspace: str, page_number: int, per_page: int, search: str | None) -> dict[str, Any]:
        with reading() as conn:
            ws = require(queries.workspace(conn, workspace), f"Workspace '{workspace}'")
            rows, pager = queries.views(conn, workspace, page=page_number, per_page=per_page, search=search)
        return {"workspace": ws, "views": rows, "page": pager.to_dict(), "search": search}

    def view_data(workspace: str, view: str, versions_page: int, events_page: int, runs_page: int) -> dict[str, Any]:
        with reading() as conn:
            data = queries.view(conn, workspace, view, versions_page=versions_page, events_page=events_page,
                                runs_page=runs_page)
        return dict(require(data, f"Feature view '{view}' in workspace '{workspace}'"))

    def plan_list(workspace: str, page_number: int, per_page: int) -> dict[str, Any]:
        with reading() as conn:
            ws = require(queries.workspace(conn, workspace), f"Workspace '{workspace}'")
            rows, pager = queries.plans(conn, workspace, page=page_number, per_page=per_page)
        return {"workspace": ws, "plans": rows, "page": pager.to_dict()}

    def plan_data(workspace: str, plan_id: str) -> dict[str, Any]:
        with reading() as conn:
            return dict(require(queries.plan(conn, workspace, plan_id), f"Plan '{plan_id}' of workspace '{workspace}'"))

    def dag_data(dag_id: str, limit: int) -> dict[str, Any]:
        with reading() as conn:
            return {"dag_id": dag_id, "limit": limit, "activity": queries.dag_activity(conn, dag_id, limit=limit)}

    # --- HTML -----------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        with reading() as conn:
            rows = queries.workspaces(conn)
        return page(request, "index.html", workspaces=rows, registry=safe_url(registry().url))

    @app.get("/workspaces/{workspace}", response_class=HTMLResponse, include_in_schema=False)
    def workspace_page(request: Request, workspace: str, page_number: int = Query(1, alias="page", ge=1),
                       per_page: int = Query(50, ge=1, le=queries.MAX_PER_PAGE),
                       q: str | None = Query(None, max_length=63)) -> HTMLResponse:
        return page(request, "workspace.html", **workspace_views(workspace, page_number, per_page, q))

    @app.get("/workspaces/{workspace}/views/{view}", response_class=HTMLResponse, include_in_schema=False)
    def view_page(request: Request, workspace: str, view: str, versions_page: int = Query(1, ge=1),
                  events_page: int = Query(1, ge=1), runs_page: int = Query(1, ge=1)) -> HTMLResponse:
        data = view_data(workspace, view, versions_page, events_page, runs_page)
        return page(request, "view.html", view=data, coverage=coverage_svg(data["versions"]))

    @app.get("/workspaces/{workspace}/views/{view}/coverage.svg", include_in_schema=False)
    def coverage_picture(workspace: str, view: str, versions_page: int = Query(1, ge=1)) -> Response:
        data = view_data(workspace, view, versions_page, 1, 1)
        return Response(coverage_svg(data["versions"]) or _EMPTY_SVG, media_type="image/svg+xml")

    @app.get("/workspaces/{workspace}/plans", response_class=HTMLResponse, include_in_schema=False)
    def plans_page(request: Request, workspace: str, page_number: int = Query(1, alias="page", ge=1),
                   per_page: int = Query(50, ge=1, le=queries.MAX_PER_PAGE)) -> HTMLResponse:
        return page(request, "plans.html", **plan_list(workspace, page_number, per_page))

    @app.get("/workspaces/{workspace}/plans/{plan_id}", response_class=HTMLResponse, include_in_schema=False)
    def plan_page(request: Request, workspace: str, plan_id: str) -> HTMLResponse:
        data = plan_data(workspace, plan_id)
        return page(request, "plan.html", workspace=workspace, plan=data,
                    plan_json=json.dumps(data["json"], indent=2, sort_keys=False))

    @app.get("/dags/{dag_id}", response_class=HTMLResponse, include_in_schema=False)
    def dag_page(request: Request, dag_id: str, limit: int = Query(100, ge=1, le=queries.MAX_PER_PAGE)) -> HTMLResponse:
        return page(request, "dag.html", **dag_data(dag_id, limit))

    # --- JSON -----------------------------------------------------------------------------------

    @app.get("/api/workspaces", summary="Workspaces with their numbers of views and staged versions")
    def api_workspaces() -> Response:
        with reading() as conn:
            return as_json({"workspaces": queries.workspaces(conn)})

    @app.get("/api/workspaces/{workspace}/views", summary="A page of a workspace's feature views")
    def api_views(workspace: str, page_number: int = Query(1, alias="page", ge=1),
                  per_page: int = Query(50, ge=1, le=queries.MAX_PER_PAGE),
                  q: str | None = Query(None, max_length=63)) -> Response:
        return as_json(workspace_views(workspace, page_number, per_page, q))

    @app.get("/api/workspaces/{workspace}/views/{view}",
             summary="A feature view: versions with diffs and coverage, timeline, runs, parity reports")
    def api_view(workspace: str, view: str, versions_page: int = Query(1, ge=1), events_page: int = Query(1, ge=1),
                 runs_page: int = Query(1, ge=1)) -> Response:
        return as_json(view_data(workspace, view, versions_page, events_page, runs_page))

    @app.get("/api/workspaces/{workspace}/plans", summary="A page of a workspace's stored plans")
    def api_plans(workspace: str, page_number: int = Query(1, alias="page", ge=1),
                  per_page: int = Query(50, ge=1, le=queries.MAX_PER_PAGE)) -> Response:
        return as_json(plan_list(workspace, page_number, per_page))

    @app.get("/api/workspaces/{workspace}/plans/{plan_id}", summary="A stored plan: rendered diff and JSON")
    def api_plan(workspace: str, plan_id: str) -> Response:
        return as_json(plan_data(workspace, plan_id))

    @app.get("/api/dags/{dag_id}", summary="What the runs of one DAG did to the registry")
    def api_dag(dag_id: str, limit: int = Query(100, ge=1, le=queries.MAX_PER_PAGE)) -> Response:
        return as_json(dag_data(dag_id, limit))

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi() -> Any:
        return app.openapi()

    return app


def as_json(data: Any) -> Response:
    """JSON with ISO 8601 timestamps (FastAPI's ``jsonable_encoder`` walks every value in Python and
    was most of the time of a large view's endpoint)."""
    return Response(json.dumps(data, default=_json_default, separators=(",", ":")), media_type="application/json")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_EMPTY_SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"/>'


def _explain(err: Exception, source: Registry | None) -> str:
    """What went wrong, with any registry password masked."""
    url = source.url.render_as_string(hide_password=False) if source is not None else ""
    if isinstance(err, FeatureRolloutError):
        text = str(err)
    else:
        first = str(err).splitlines()[0] if str(err) else ""
        text = (f"{type(err).__name__}: {first}. If the registry is new or was made by an older version, run "
                "'feature-rollout registry upgrade' (the UI never changes the registry).")
    return redact(text, url) if url else text
