"""The Airflow UI plugin: EAS pages mounted in the API server at ``/eas``.

- ``/eas/`` lists the groups (with member weights) and services of a connection
  (``?conn_id=``, default ``eas_default``); ``/eas/services/<name>`` shows one service:
  status, instances, the last minute's metrics and its events. The EAS console link of the
  operators points here unless the connection sets its own ``console_url``. Tokens are
  never shown, and only signed-in users who may read the connection see these pages.
- ``/eas/rollouts/<dag_id>/<run_id>`` draws one run of a rollout DAG: the members' weights
  over time, the candidate's and the stable member's error rate and p99 against the
  analysis thresholds, and each verdict, the promotion or the rollback. It is a tab of
  every DAG run (an ``external_views`` entry with ``destination="dag_run"``) for users who
  may read the DAG's runs.

Pages are Jinja2 templates (autoescaped); sign-in and permissions are Airflow's own
dependencies (``GetUserDep``, ``requires_access_dag``) and its auth manager.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated dependencies
# (GetUserDep, SessionDep) imported inside create_app() as objects, not as strings.
import time
from pathlib import Path
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from airflow_eas.hooks.eas import EasHook
from airflow_eas.ui.timeline import TaskRecord, add_member_series, build_timeline

UI = Path(__file__).parent / "ui"
CHART_LIBRARY = Path(__file__).parent / "server" / "console" / "static"  # the one vendored copy of uPlot
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'self'",
    "Cache-Control": "no-store",
}


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(UI / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["clock"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "–"
    env.filters["ms"] = lambda v: "–" if v is None else f"{v:.0f} ms"
    env.filters["pct"] = lambda v: "–" if v is None else f"{v:.1%}"
    return env


def rollout_data(session: Any, dag_id: str, run_id: str, conn_id: str) -> dict[str, Any]:
    """The timeline of one run from the metadata DB, with the members' points from the platform."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        raise HTTPException(404, f"no run {run_id!r} of DAG {dag_id!r}")
    tis = session.scalars(
        select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
    ).all()
    tasks = [
        TaskRecord(ti.task_id, str(ti.state) if ti.state else None,
                   ti.start_date.timestamp() if ti.start_date else None,
                   ti.end_date.timestamp() if ti.end_date else None)
        for ti in tis if ti.map_index == -1
    ]
    rows = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, key="return_value")).all()
    xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows if row.map_index == -1}
    now = time.time()
    timeline = build_timeline(tasks, xcoms, now=now, run_state=str(run.state) if run.state else None)
    timeline.update(dag_id=dag_id, run_id=run_id, conn_id=conn_id)
    add_member_series(timeline, lambda: EasHook(conn_id).get_platform(), source=conn_id, now=now)
    return timeline


def create_app() -> FastAPI:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails, DagAccessEntity
    from airflow.api_fastapi.common.db.common import SessionDep
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag

    from airflow_eas.errors import EasError

    env = _templates()

    def may_read_connection(user: GetUserDep, conn_id: str = EasHook.default_conn_name) -> None:
        """Signed in (Airflow resolves the user from its own token) and allowed to read the connection."""
        allowed = get_auth_manager().is_authorized_connection(
            method="GET", details=ConnectionDetails(conn_id=conn_id), user=user
        )
        if not allowed:
            raise HTTPException(status_code=403, detail=f"not allowed to read connection {conn_id}")

    may_read_runs = Depends(requires_access_dag("GET", DagAccessEntity.RUN))

    app = FastAPI(title="EAS", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static/lib", StaticFiles(directory=CHART_LIBRARY), name="eas-chart-library")
    app.mount("/static", StaticFiles(directory=UI / "static"), name="eas-static")

    def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")  # where Airflow mounted this app
        html = env.get_template(template).render(base=base, **ctx)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(may_read_connection)])
    def overview(request: Request, conn_id: str = EasHook.default_conn_name) -> HTMLResponse:
        try:
            platform = EasHook(conn_id).get_platform()
            services, groups = platform.list(), platform.list_groups()
        except EasError as exc:
            return render(request, "overview.html", conn_id=conn_id, error=exc.message, services=[], groups=[])
        return render(request, "overview.html", conn_id=conn_id, error=None, services=services, groups=groups)

    @app.get("/services/{name}", response_class=HTMLResponse, dependencies=[Depends(may_read_connection)])
    def service(request: Request, name: str, conn_id: str = EasHook.default_conn_name) -> HTMLResponse:
        try:
            platform = EasHook(conn_id).get_platform()
            info, metrics = platform.describe(name), platform.metrics(name, 60)
        except EasError as exc:
            return render(request, "service.html", conn_id=conn_id, name=name, error=exc.message)
        return render(request, "service.html", conn_id=conn_id, name=name, error=None, info=info, metrics=metrics)

    @app.get("/rollouts/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[may_read_runs])
    def rollout(request: Request, dag_id: str, run_id: str, session: SessionDep,
                conn_id: str = EasHook.default_conn_name) -> HTMLResponse:
        data = rollout_data(session, dag_id, run_id, conn_id)
        return render(request, "rollout.html", t=data)

    @app.get("/rollouts/{dag_id}/{run_id}/data", dependencies=[may_read_runs])
    def rollout_json(dag_id: str, run_id: str, session: SessionDep,
                     conn_id: str = EasHook.default_conn_name) -> JSONResponse:
        return JSONResponse(rollout_data(session, dag_id, run_id, conn_id), headers=HEADERS)

    return app


class EasPlugin(AirflowPlugin):
    """Mounts the EAS pages in the Airflow API server; links them from the navigation and each DAG run."""

    name = "eas"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/eas", "name": "EAS console"}]
    external_views = [
        {"name": "EAS", "href": "/eas/", "destination": "nav", "category": "browse"},
        # a tab of every DAG run; Airflow fills in the placeholders (relative: works behind a path prefix)
        {"name": "Rollout", "href": "eas/rollouts/{DAG_ID}/{RUN_ID}", "destination": "dag_run",
         "url_route": "eas-rollout"},  # the tab's own address: /dags/<dag>/runs/<run>/plugin/eas-rollout
    ]
